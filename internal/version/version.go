// Package version tells which build of the operator is running. The Makefile
// stamps Version (from the VERSION file) and Revision (the git commit) at link
// time:
//
//	go build -ldflags "-X github.com/servicetoken-operator/servicetoken-operator/internal/version.Version=0.1.0 \
//	    -X github.com/servicetoken-operator/servicetoken-operator/internal/version.Revision=$(git rev-parse HEAD)"
//
// A binary built without them (go run, go install) falls back to what the Go
// toolchain recorded: the module version and VCS revision, when it has them.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Set with -ldflags -X; empty when the build did not stamp them.
var (
	// Version is the operator's version, without a leading "v" (e.g. 0.1.0).
	Version = ""
	// Revision is the git commit the binary was built from.
	Revision = ""
)

// unknown stands for a value neither the build nor the toolchain recorded.
const unknown = "unknown"

// Info is what is known about the running build.
type Info struct {
	Version   string
	Revision  string
	GoVersion string
}

// Get returns the running build's Info; fields nobody recorded read "unknown".
func Get() Info {
	i := Info{Version: Version, Revision: Revision, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; i.Version == "" && v != "" && v != "(devel)" {
			i.Version = strings.TrimPrefix(v, "v")
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && i.Revision == "" {
				i.Revision = s.Value
			}
		}
	}
	if i.Version == "" {
		i.Version = unknown
	}
	if i.Revision == "" {
		i.Revision = unknown
	}
	return i
}

// Line is the line a binary prints for --version, e.g.
// "manager 0.1.0 (revision 1a2b3c4, go1.26.8)".
func (i Info) Line(program string) string {
	return fmt.Sprintf("%s %s (revision %s, %s)", program, i.Version, i.Revision, i.GoVersion)
}
