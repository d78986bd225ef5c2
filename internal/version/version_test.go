package version

import (
	"runtime"
	"testing"

	. "github.com/onsi/gomega"
)

func TestGetPrefersTheStampedValues(t *testing.T) {
	g := NewWithT(t)
	oldVersion, oldRevision := Version, Revision
	t.Cleanup(func() { Version, Revision = oldVersion, oldRevision })

	Version, Revision = "1.2.3", "abc123"
	g.Expect(Get()).To(Equal(Info{Version: "1.2.3", Revision: "abc123", GoVersion: runtime.Version()}))
	g.Expect(Get().Line("cfsim")).To(Equal("cfsim 1.2.3 (revision abc123, " + runtime.Version() + ")"))

	// A test binary records no module version or VCS revision: nothing is
	// left empty (an empty metric label would read as no label at all).
	Version, Revision = "", ""
	g.Expect(Get()).To(Equal(Info{Version: "unknown", Revision: "unknown", GoVersion: runtime.Version()}))
}
