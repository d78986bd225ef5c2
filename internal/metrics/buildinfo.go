package metrics

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/servicetoken-operator/servicetoken-operator/internal/version"
)

// NewBuildInfo returns the servicetoken_build_info gauge for the running
// build: always 1, the build in its labels, so a query can join any series
// with the version that produced it.
func NewBuildInfo() prometheus.Collector {
	v := version.Get()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "servicetoken_build_info",
		Help: "The running operator's build: version, git revision and Go version in the labels; always 1.",
		ConstLabels: prometheus.Labels{
			"version": v.Version, "revision": v.Revision, "goversion": v.GoVersion,
		},
	})
	g.Set(1)
	return g
}

// RegisterBuildInfo registers NewBuildInfo with reg, normally controller-runtime's
// metrics registry (served on the manager's metrics endpoint). Registering it
// twice is not an error.
func RegisterBuildInfo(reg prometheus.Registerer) error {
	if err := reg.Register(NewBuildInfo()); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
		return err
	}
	return nil
}
