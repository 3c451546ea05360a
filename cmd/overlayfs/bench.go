package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"overlayfs/bench"
)

// runBench is `overlayfs bench`: it measures the media side by side by
// mounting with this very binary, prints the table to stdout and progress
// to stderr, and writes --json and --chart. Ctrl-C stops it after
// unmounting whatever is mounted.
func runBench(args []string) error {
	opts, err := bench.ParseFlags(args, os.Stderr)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the overlayfs binary: %w", err)
	}
	opts.Config.Binary = self
	opts.Config.Progress = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, runErr := bench.Run(ctx, opts.Config)
	if res == nil {
		return runErr
	}
	if err := bench.WriteTable(os.Stdout, res); err != nil {
		return err
	}
	if opts.JSONPath != "" {
		if err := writeFileWith(opts.JSONPath, func(f *os.File) error { return bench.WriteJSON(f, res) }); err != nil {
			return err
		}
	}
	if opts.ChartPath != "" {
		if err := writeFileWith(opts.ChartPath, func(f *os.File) error { return bench.WriteSVG(f, res) }); err != nil {
			return err
		}
	}
	if runErr != nil {
		return runErr
	}
	if res.Lower.Checked && !res.Lower.Unchanged {
		return fmt.Errorf("the lower tree changed: %v", res.Lower.Diffs)
	}
	return nil
}

// writeFileWith creates path and fills it with write.
func writeFileWith(path string, write func(*os.File) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
