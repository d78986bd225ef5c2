package metrics

import (
	"runtime"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/servicetoken-operator/servicetoken-operator/internal/version"
)

func TestBuildInfoCarriesTheStampedVersion(t *testing.T) {
	g := NewWithT(t)
	oldVersion, oldRevision := version.Version, version.Revision
	t.Cleanup(func() { version.Version, version.Revision = oldVersion, oldRevision })
	version.Version, version.Revision = "1.2.3-test", "0123456789abcdef0123456789abcdef01234567"

	reg := prometheus.NewPedanticRegistry()
	g.Expect(RegisterBuildInfo(reg)).To(Succeed())
	g.Expect(RegisterBuildInfo(reg)).To(Succeed(), "registering twice is not an error")
	g.Expect(testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP servicetoken_build_info The running operator's build: version, git revision and Go version in the labels; always 1.
# TYPE servicetoken_build_info gauge
servicetoken_build_info{goversion="`+runtime.Version()+`",revision="0123456789abcdef0123456789abcdef01234567",version="1.2.3-test"} 1
`), "servicetoken_build_info")).To(Succeed())
}
