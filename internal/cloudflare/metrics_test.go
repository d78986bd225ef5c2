package cloudflare

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// sample reads one series from controller-runtime's registry: a counter's
// value or a histogram's count. Missing series read as 0.
func sample(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if matches(m, labels) {
				if h := m.GetHistogram(); h != nil {
					return float64(h.GetSampleCount())
				}
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func matches(m *dto.Metric, want map[string]string) bool {
	got := map[string]string{}
	for _, l := range m.GetLabel() {
		got[l.GetName()] = l.GetValue()
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

func TestMetricsRecordedOnControllerRuntimeRegistry(t *testing.T) {
	g := NewWithT(t)
	n := 0
	srv, _ := recordingServer(t, func(*http.Request) (int, string) {
		n++
		if n == 1 {
			return 200, success(`{"id":"` + testTokenID + `","name":"n"}`)
		}
		return 429, failure(971, "slow down")
	})
	ok := map[string]string{"operation": "get", "code": "200"}
	limited := map[string]string{"operation": "get", "code": "429"}
	before := map[string]float64{
		"ok":       sample(t, "servicetoken_cloudflare_requests_total", ok),
		"429":      sample(t, "servicetoken_cloudflare_requests_total", limited),
		"duration": sample(t, "servicetoken_cloudflare_request_duration_seconds", map[string]string{"operation": "get"}),
		"wait":     sample(t, "servicetoken_cloudflare_ratelimiter_wait_seconds", nil),
		"server":   sample(t, "servicetoken_cloudflare_rate_limited_total", map[string]string{"source": "server"}),
		"client":   sample(t, "servicetoken_cloudflare_rate_limited_total", map[string]string{"source": "client"}),
	}
	c, _ := newTestClient(t, srv.URL, FactoryOptions{Metrics: true})
	ctx := context.Background()

	_, err := c.Get(ctx, Scope{AccountID: testAccount}, testTokenID)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = c.Get(ctx, Scope{AccountID: testAccount}, testTokenID) // 429 from the server
	g.Expect(KindOf(err)).To(Equal(KindRateLimited))
	_, err = c.Get(ctx, Scope{AccountID: testAccount}, testTokenID) // refused locally (paused)
	g.Expect(KindOf(err)).To(Equal(KindRateLimited))

	g.Expect(sample(t, "servicetoken_cloudflare_requests_total", ok)).To(Equal(before["ok"] + 1))
	g.Expect(sample(t, "servicetoken_cloudflare_requests_total", limited)).To(Equal(before["429"] + 1))
	g.Expect(sample(t, "servicetoken_cloudflare_request_duration_seconds", map[string]string{"operation": "get"})).To(Equal(before["duration"] + 2))
	g.Expect(sample(t, "servicetoken_cloudflare_ratelimiter_wait_seconds", nil)).To(Equal(before["wait"] + 2))
	g.Expect(sample(t, "servicetoken_cloudflare_rate_limited_total", map[string]string{"source": "server"})).To(Equal(before["server"] + 1))
	g.Expect(sample(t, "servicetoken_cloudflare_rate_limited_total", map[string]string{"source": "client"})).To(Equal(before["client"] + 1))

	// Registering again (another factory) is harmless.
	NewFactory(FactoryOptions{Metrics: true})
	RegisterMetrics()
}

// With metrics off nothing is recorded.
func TestMetricsOff(t *testing.T) {
	g := NewWithT(t)
	srv, _ := recordingServer(t, func(*http.Request) (int, string) { return 200, success(`[]`) })
	labels := map[string]string{"operation": "list", "code": "200"}
	before := sample(t, "servicetoken_cloudflare_requests_total", labels)
	c, _ := newTestClient(t, srv.URL, FactoryOptions{})
	_, err := c.List(context.Background(), Scope{AccountID: testAccount}, ListOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(sample(t, "servicetoken_cloudflare_requests_total", labels)).To(Equal(before))
}

// No label ever carries a credential.
func TestMetricLabelsAreBounded(t *testing.T) {
	g := NewWithT(t)
	srv, _ := recordingServer(t, func(*http.Request) (int, string) { return 200, success(`[]`) })
	f := NewFactory(FactoryOptions{Metrics: true, RequestTimeout: time.Second})
	c, err := f.ClientFor(AccountConfig{Key: "k", BaseURL: srv.URL + "/client/v4", APIToken: leakAPIToken})
	g.Expect(err).NotTo(HaveOccurred())
	_, err = c.List(context.Background(), Scope{AccountID: testAccount}, ListOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	families, err := metrics.Registry.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	for _, mf := range families {
		if !strings.HasPrefix(mf.GetName(), "servicetoken_cloudflare_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				g.Expect([]string{"operation", "code", "source"}).To(ContainElement(l.GetName()))
				g.Expect(l.GetValue()).NotTo(ContainSubstring(leakAPIToken))
			}
		}
	}
}
