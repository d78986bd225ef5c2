package cloudflare

import (
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// The labels are bounded on purpose: operation (7 values), HTTP status or
// "error", and source. No account, token or credential ever becomes a label.
var (
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "servicetoken_cloudflare_requests_total",
		Help: "Requests sent to the Cloudflare API, by operation and HTTP status (\"error\" when no response arrived).",
	}, []string{"operation", "code"})

	requestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "servicetoken_cloudflare_request_duration_seconds",
		Help:    "Duration of Cloudflare API requests, by operation.",
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
	}, []string{"operation"})

	limiterWaitSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "servicetoken_cloudflare_ratelimiter_wait_seconds",
		Help:    "Time a request queued in the client-side rate limiter before it was sent.",
		Buckets: []float64{0, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5},
	})

	rateLimitedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "servicetoken_cloudflare_rate_limited_total",
		Help: "Calls refused for rate limiting: source=server is a 429 from Cloudflare, source=client the local budget.",
	}, []string{"source"})

	registerOnce sync.Once
)

// RegisterMetrics registers the client metrics on controller-runtime's
// registry. It is idempotent; NewFactory calls it when metrics are on.
func RegisterMetrics() {
	registerOnce.Do(func() {
		for _, c := range []prometheus.Collector{requestsTotal, requestDuration, limiterWaitSeconds, rateLimitedTotal} {
			var already prometheus.AlreadyRegisteredError
			if err := metrics.Registry.Register(c); err != nil && !errors.As(err, &already) {
				panic(err) // a name clash with a different collector is a programming error
			}
		}
	})
}

// recorder records into the package metrics when on; the zero value is off,
// so tests and tools that do not want global metrics pay nothing.
type recorder struct{ on bool }

func (r recorder) request(op string, status int, d time.Duration) {
	if !r.on {
		return
	}
	code := "error"
	if status != 0 {
		code = strconv.Itoa(status)
	}
	requestsTotal.WithLabelValues(op, code).Inc()
	requestDuration.WithLabelValues(op).Observe(d.Seconds())
}

func (r recorder) limiterWait(d time.Duration) {
	if r.on {
		limiterWaitSeconds.Observe(d.Seconds())
	}
}

func (r recorder) rateLimited(source string) {
	if r.on {
		rateLimitedTotal.WithLabelValues(source).Inc()
	}
}
