package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"overlayfs/internal/treehash"
)

// assets are the inputs shared by all runs: the lower tree every overlay
// mounts, the tarball untar extracts, the go command.
type assets struct {
	lower       string
	tarball     string
	tarFiles    int // entries in the tarball
	treeEntries int // entries under lower/tree, itself included
	goBin       string
	// stacks are the stacked-layer workloads' layer directories by layer
	// count, top-most first (under lower/layers).
	stacks map[int][]string
}

// buildProgram is the stdlib-only program the build workload compiles.
const buildProgram = `// Command wordfreq prints the most frequent words of its input files.
package main

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strings"
)

func main() {
	counts := map[string]int{}
	for _, name := range os.Args[1:] {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		sc := bufio.NewScanner(f)
		sc.Split(bufio.ScanWords)
		for sc.Scan() {
			counts[strings.ToLower(sc.Text())]++
		}
		f.Close()
	}
	words := make([]string, 0, len(counts))
	for w := range counts {
		words = append(words, w)
	}
	sort.Slice(words, func(i, j int) bool { return counts[words[i]] > counts[words[j]] })
	for i, w := range words {
		if i == 10 {
			break
		}
		fmt.Printf("%7d %s\n", counts[w], w)
	}
}
`

// buildAssets makes the lower tree (only the parts the chosen workloads
// need) and the tarball under scratch.
func buildAssets(ctx context.Context, cfg *Config, sc scale, scratch string, ws []workload) (*assets, error) {
	a := &assets{lower: filepath.Join(scratch, "lower")}
	if err := os.Mkdir(a.lower, 0o755); err != nil {
		return nil, err
	}
	need := map[string]bool{}
	for _, w := range ws {
		for _, p := range w.parts {
			need[p] = true
		}
		if w.name == "untar" {
			need["tarball"] = true
		}
	}
	for _, w := range ws {
		if w.layers > 0 && a.stacks == nil {
			var err error
			if a.stacks, err = buildStacks(ctx, a.lower, sc, cfg.Layers); err != nil {
				return nil, err
			}
		}
	}
	srcs, err := treeSources(cfg.GoSrc, sc.treeDirs)
	if (need[partTree] || need["tarball"]) && err != nil {
		return nil, err
	}
	if need[partBig] {
		if err := writeFile(ctx, filepath.Join(a.lower, partBig), sc.size); err != nil {
			return nil, fmt.Errorf("make lower file: %w", err)
		}
	}
	if need[partTree] {
		tree := filepath.Join(a.lower, partTree)
		if err := os.Mkdir(tree, 0o755); err != nil {
			return nil, err
		}
		if err := runCmd(ctx, "", nil, "cp", append(append([]string{"-a"}, srcs...), tree)...); err != nil {
			return nil, fmt.Errorf("copy the source tree: %w", err)
		}
		if a.treeEntries, err = countEntries(tree); err != nil {
			return nil, err
		}
	}
	if need["tarball"] {
		a.tarball = filepath.Join(scratch, "src.tar")
		args := []string{"-cf", a.tarball, "-C", filepath.Dir(srcs[0])}
		for _, s := range srcs {
			args = append(args, filepath.Base(s))
		}
		if err := runCmd(ctx, "", nil, "tar", args...); err != nil {
			return nil, fmt.Errorf("make the tarball: %w", err)
		}
		for _, s := range srcs {
			n, err := countEntries(s)
			if err != nil {
				return nil, err
			}
			a.tarFiles += n
		}
	}
	if need[partGoMod] {
		if err := makeGoModule(ctx, a, cfg, sc, scratch); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// treeSources lists the directories copied and tarred: all of GoSrc, or
// the chosen subdirectories of it.
func treeSources(goSrc string, dirs []string) ([]string, error) {
	if goSrc == "" {
		return nil, fmt.Errorf("no Go source tree found (set GoSrc / --src)")
	}
	if st, err := os.Stat(goSrc); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("source tree %s is not a directory (%v)", goSrc, err)
	}
	if len(dirs) == 0 {
		return []string{goSrc}, nil
	}
	var out []string
	for _, d := range dirs {
		p := filepath.Join(goSrc, d)
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("none of %v is in %s", dirs, goSrc)
	}
	return out, nil
}

func makeGoModule(ctx context.Context, a *assets, cfg *Config, sc scale, scratch string) error {
	a.goBin = filepath.Join(filepath.Dir(cfg.GoSrc), "bin", "go")
	if _, err := os.Stat(a.goBin); err != nil {
		if a.goBin, err = exec.LookPath("go"); err != nil {
			return fmt.Errorf("the build workload needs the go command: %w", err)
		}
	}
	mod := filepath.Join(a.lower, partGoMod)
	if err := os.Mkdir(mod, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(mod, "go.mod"), []byte("module wordfreq\n\ngo 1.22\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(mod, "main.go"), []byte(buildProgram), 0o644); err != nil {
		return err
	}
	if !sc.buildWarm {
		return nil
	}
	tmp := filepath.Join(scratch, "gowarm")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	env := goEnv(filepath.Join(a.lower, partCache), tmp, tmp)
	if err := runCmd(ctx, mod, env, a.goBin, "build", "-o", filepath.Join(tmp, "prog"), "."); err != nil {
		return fmt.Errorf("warm the go build cache: %w", err)
	}
	return nil
}

// copyParts copies the named lower parts into dst with cp -a, for a medium
// that changes its lower (none, host).
func copyParts(ctx context.Context, lower, dst string, parts []string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	var srcs []string
	for _, p := range parts {
		srcs = append(srcs, filepath.Join(lower, p))
		if p == partGoMod {
			if _, err := os.Stat(filepath.Join(lower, partCache)); err == nil {
				srcs = append(srcs, filepath.Join(lower, partCache))
			}
		}
	}
	if len(srcs) == 0 {
		return nil
	}
	return runCmd(ctx, "", nil, "cp", append(append([]string{"-a"}, srcs...), dst)...)
}

func countEntries(root string) (int, error) {
	n := 0
	err := filepath.WalkDir(root, func(string, os.DirEntry, error) error { n++; return nil })
	return n, err
}

// treeDigest digests every entry below root (root's own metadata excluded,
// and that of the skip directories, relative to root: the self medium
// creates and removes its filestore in the top lower directory, which
// changes its mtime).
func treeDigest(root string, skip []string) (treehash.Snapshot, error) {
	snap, err := treehash.Take(root)
	if err != nil {
		return nil, err
	}
	delete(snap, ".")
	for _, s := range skip {
		delete(snap, s)
	}
	return snap, nil
}

// diffDigests lists up to max paths that differ between two digests.
func diffDigests(a, b treehash.Snapshot, max int) []string {
	out := a.DiffPaths(b)
	if len(out) > max {
		out = append(out[:max], fmt.Sprintf("... and %d more", len(out)-max))
	}
	return out
}
