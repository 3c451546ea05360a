package bench

import (
	"encoding/json"
	"fmt"
	"io"
)

// WriteJSON writes every figure of the result as indented JSON; ReadJSON
// reads it back.
func WriteJSON(w io.Writer, r *Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	return nil
}

// ReadJSON reads a result written by WriteJSON.
func ReadJSON(rd io.Reader) (*Result, error) {
	var r Result
	if err := json.NewDecoder(rd).Decode(&r); err != nil {
		return nil, fmt.Errorf("read json: %w", err)
	}
	return &r, nil
}
