// Package docs checks that the documentation keeps up with the code: every
// condition reason has a troubleshooting section, every metric is described,
// and relative links resolve.
package docs

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// stringConsts returns the string constants of a Go file whose names start
// with prefix.
func stringConsts(t *testing.T, path, prefix string) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, prefix) || i >= len(vs.Values) {
					continue
				}
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					v, _ := strconv.Unquote(lit.Value)
					out[name.Name] = v
				}
			}
		}
	}
	return out
}

func TestEveryConditionReasonHasATroubleshootingSection(t *testing.T) {
	reasons := stringConsts(t, "../api/v1alpha1/conditions.go", "Reason")
	if len(reasons) == 0 {
		t.Fatal("no Reason constants found in api/v1alpha1/conditions.go")
	}
	doc := read(t, "troubleshooting.md")
	for name, reason := range reasons {
		if !strings.Contains(doc, "\n## "+reason+"\n") {
			t.Errorf("troubleshooting.md has no section %q for %s", "## "+reason, name)
		}
	}
}

// reasonHeading is a troubleshooting section about one reason: a
// second-level heading of one CamelCase word ("## CredentialsMissing"); the
// other sections ("## Where to look", "## Force-deleting a stuck
// ServiceToken") have spaces or hyphens.
var reasonHeading = regexp.MustCompile(`(?m)^## ([A-Z][A-Za-z]+)$`)

// The other half of the sync: a section about a reason the operator cannot
// write (renamed, removed, misspelt) would send a reader after nothing.
func TestEveryTroubleshootingSectionNamesAReason(t *testing.T) {
	values := map[string]bool{}
	for _, v := range stringConsts(t, "../api/v1alpha1/conditions.go", "Reason") {
		values[v] = true
	}
	seen := map[string]bool{}
	for _, m := range reasonHeading.FindAllStringSubmatch(read(t, "troubleshooting.md"), -1) {
		if !values[m[1]] {
			t.Errorf("troubleshooting.md has a section %q, but no Reason constant in api/v1alpha1/conditions.go has that value", "## "+m[1])
		}
		if seen[m[1]] {
			t.Errorf("troubleshooting.md has two sections %q", "## "+m[1])
		}
		seen[m[1]] = true
	}
	if len(seen) == 0 {
		t.Fatal("no reason sections found in troubleshooting.md")
	}
}

func TestEveryMetricIsDescribed(t *testing.T) {
	names := regexp.MustCompile(`"(servicetoken_[a-z_]+)"`)
	doc := read(t, "metrics.md")
	for _, src := range []string{"../internal/metrics/metrics.go", "../internal/metrics/buildinfo.go", "../internal/cloudflare/metrics.go"} {
		found := names.FindAllStringSubmatch(read(t, src), -1)
		if len(found) == 0 {
			t.Errorf("no metric names found in %s", src)
		}
		for _, m := range found {
			if !strings.Contains(doc, "| `"+m[1]+"` |") {
				t.Errorf("metrics.md has no table row for %s (%s)", m[1], src)
			}
		}
	}
}

var (
	mdLink     = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	heading    = regexp.MustCompile(`(?m)^#{1,6} +(.+)$`)
	codeSpan   = regexp.MustCompile("`[^`\n]*`")
	codeBlocks = regexp.MustCompile("(?s)\n```.*?\n```")
)

// anchor is GitHub's heading anchor: lower case, spaces to dashes, most
// punctuation dropped.
func anchor(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(h)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		}
	}
	return b.String()
}

func TestRelativeLinksResolve(t *testing.T) {
	files, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		text := codeSpan.ReplaceAllString(codeBlocks.ReplaceAllString(read(t, f), ""), "")
		for _, m := range mdLink.FindAllStringSubmatch(text, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, frag, _ := strings.Cut(target, "#")
			if path == "" {
				path = f
			}
			if _, err := os.Stat(path); err != nil {
				t.Errorf("%s: link %s: %v", f, target, err)
				continue
			}
			if frag == "" || !strings.HasSuffix(path, ".md") {
				continue
			}
			ok := false
			for _, h := range heading.FindAllStringSubmatch(read(t, path), -1) {
				if anchor(h[1]) == frag {
					ok = true
					break
				}
			}
			if !ok {
				t.Errorf("%s: link %s: no heading with anchor #%s in %s", f, target, frag, path)
			}
		}
	}
}
