package olm

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"golang.org/x/mod/modfile"
)

const repoRoot = "../.."

// TestImageBuildContext: the Dockerfile builds from a context that
// .dockerignore cuts down to the Go sources of the manager. A package the
// manager starts to import from a folder .dockerignore does not admit would
// break the image build only on a machine with a container runtime; catch it
// here. Test files and testdata are left out of the context, so the manager
// must not embed anything from them.
func TestImageBuildContext(t *testing.T) {
	admitted, excluded := readDockerignore(t)
	if len(admitted) == 0 {
		t.Fatal(".dockerignore admits nothing: it must start with '*' and list what the build needs with '!'")
	}
	for _, f := range []string{"go.mod", "go.sum", "main.go"} {
		if !slices.Contains(admitted, f) {
			t.Errorf(".dockerignore does not admit %s", f)
		}
	}

	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.Dir}}|{{join .EmbedFiles \",\"}}", ".")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list the manager's packages: %v", err)
	}
	local := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		dir, embeds, _ := strings.Cut(line, "|")
		rel, err := filepath.Rel(root, dir)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue // the standard library and modules
		}
		local++
		top := strings.Split(filepath.ToSlash(rel), "/")[0]
		if rel != "." && !slices.Contains(admitted, top+"/") {
			t.Errorf("the manager imports %s, but .dockerignore does not admit %s/: add !%s/", rel, top, top)
		}
		for _, e := range strings.Split(embeds, ",") {
			if e == "" {
				continue
			}
			p := filepath.ToSlash(filepath.Join(rel, e))
			for _, ex := range excluded {
				if ex.MatchString(p) {
					t.Errorf("%s embeds %s, which .dockerignore leaves out of the build context", rel, p)
				}
			}
		}
	}
	if local < 2 {
		t.Fatalf("go list found %d packages of this module in the manager: the test is not looking at the right thing", local)
	}
}

// readDockerignore returns the admitted entries ("go.mod", "pkg/") and the
// exclusions that follow them, as regular expressions over slash paths.
func readDockerignore(t *testing.T) (admitted []string, excluded []*regexp.Regexp) {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	first := true
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if first {
			if line != "*" {
				t.Fatalf(".dockerignore must start by excluding everything ('*'), found %q", line)
			}
			first = false
			continue
		}
		if entry, ok := strings.CutPrefix(line, "!"); ok {
			admitted = append(admitted, entry)
			continue
		}
		// Only the "**/" prefix and "*" inside one name are used here.
		pattern := regexp.QuoteMeta(strings.TrimSuffix(line, "/"))
		pattern = strings.ReplaceAll(pattern, `\*\*/`, `(.*/)?`)
		pattern = strings.ReplaceAll(pattern, `\*`, `[^/]*`)
		excluded = append(excluded, regexp.MustCompile("^"+pattern+"(/.*)?$"))
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return admitted, excluded
}

// TestDockerfile pins what the image promises: the Go version of go.mod, a
// static binary, a numeric non-root user (so that runAsNonRoot can be
// verified), and the entrypoint the Deployment runs.
func TestDockerfile(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	dockerfile := string(raw)
	modRaw, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	mod, err := modfile.ParseLax("go.mod", modRaw, nil)
	if err != nil || mod.Go == nil {
		t.Fatalf("go.mod: no go directive (%v)", err)
	}
	parts := strings.Split(mod.Go.Version, ".")
	goMinor := strings.Join(parts[:min(2, len(parts))], ".")

	var froms []string
	for _, line := range strings.Split(dockerfile, "\n") {
		if fields := strings.Fields(line); len(fields) > 1 && strings.EqualFold(fields[0], "FROM") {
			for _, f := range fields[1:] {
				if !strings.HasPrefix(f, "--") {
					froms = append(froms, f)
					break
				}
			}
		}
	}
	if len(froms) < 2 {
		t.Fatalf("the Dockerfile has %d stages, want a build stage and a runtime stage", len(froms))
	}
	if want := "golang:" + goMinor; !strings.HasPrefix(froms[0], want) {
		t.Errorf("the build stage is %s, go.mod asks for Go %s (%s)", froms[0], mod.Go.Version, want)
	}
	if last := froms[len(froms)-1]; !strings.Contains(last, "distroless/static") {
		t.Errorf("the runtime stage is %s, want a distroless static image", last)
	}
	if !strings.Contains(dockerfile, "CGO_ENABLED=0") {
		t.Error("the manager is not built with CGO_ENABLED=0: the binary would not be static")
	}
	user := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindAllStringSubmatch(dockerfile, -1)
	if len(user) == 0 || !regexp.MustCompile(`^[1-9][0-9]*(:[0-9]+)?$`).MatchString(user[len(user)-1][1]) {
		t.Errorf("the image must end with a numeric non-root USER, found %v", user)
	}
	if !strings.Contains(dockerfile, `ENTRYPOINT ["/manager"]`) {
		t.Error(`the image's entrypoint is not ["/manager"], which config/manager runs`)
	}
}
