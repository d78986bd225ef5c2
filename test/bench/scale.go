package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
)

// ---- scenario 8: memory against the number of ServiceTokens ------------------

// scalePoint is a fresh manager's memory once it has settled with Size
// ServiceTokens in the steady namespace (Total in the cluster).
type scalePoint struct {
	Size        int     `json:"size"`
	Total       int     `json:"service_tokens"`
	PeakRSSMiB  float64 `json:"peak_rss_mib"`
	RSSMiB      float64 `json:"rss_mib"`
	AnonMiB     float64 `json:"rss_anon_mib"`
	FileMiB     float64 `json:"rss_file_mib"`
	HeapMiB     float64 `json:"heap_inuse_mib"`
	PeakHeapMiB float64 `json:"peak_heap_mib"`
	SettleS     float64 `json:"settle_s"`
}

// scaleLimitMiB is the memory limit of the default install (chart and
// config/manager): every size must fit it.
const scaleLimitMiB = 256

func parseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("bad size %q", f)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// growSteady creates steady ServiceTokens up to n and waits until all are Ready.
func (b *bench) growSteady(n int) error {
	if n <= b.steadyCount {
		return nil
	}
	ns := "bench-steady"
	b.logf("steady namespace: %d → %d ServiceTokens at %s", b.steadyCount, n, b.c.bulkRate)
	if err := b.createRange(b.steadyCount, n, func(i int) client.Object {
		return serviceToken(ns, fmt.Sprintf("steady-%05d", i), "", "")
	}); err != nil {
		return err
	}
	b.steadyCount = n
	_, err := b.readyTimes(ns, n, 20*time.Minute+time.Duration(n/20)*time.Second)
	return err
}

// countServiceTokens counts every ServiceToken in the cluster (metadata only).
func (b *bench) countServiceTokens() (int, error) {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("ServiceTokenList"))
	if err := b.k8s.List(context.Background(), list); err != nil {
		return 0, err
	}
	return len(list.Items), nil
}

// scalePoint grows the steady namespace to size, starts a fresh manager and
// measures it once it has settled.
func (b *bench) scalePoint(dir string, size int) (scalePoint, error) {
	if err := b.growSteady(size); err != nil {
		return scalePoint{}, err
	}
	total, err := b.countServiceTokens()
	if err != nil {
		return scalePoint{}, err
	}
	b.logf("scenario 8: fresh manager with %d ServiceTokens (%d in the steady namespace)", total, size)
	if err := b.restartManager(dir, fmt.Sprintf("manager-scale-%d", size)); err != nil {
		return scalePoint{}, err
	}
	if _, err := b.settled(b.mgr, total, 5*time.Minute+time.Duration(total/100)*time.Second); err != nil {
		return scalePoint{}, fmt.Errorf("manager with %d ServiceTokens did not settle: %w", total, err)
	}
	return b.measurePoint(size, total)
}

// measurePoint reads a settled manager's memory.
func (b *bench) measurePoint(size, total int) (scalePoint, error) {
	pm, err := b.mgr.procMemory()
	if err != nil {
		return scalePoint{}, err
	}
	_, peakHeap := b.mgr.memory()
	last := b.mgr.latest()
	p := scalePoint{Size: size, Total: total, PeakRSSMiB: round(pm.peakRSS, 1), RSSMiB: round(pm.rss, 1),
		AnonMiB: round(pm.anon, 1), FileMiB: round(pm.file, 1), HeapMiB: round(last.heap/(1<<20), 1),
		PeakHeapMiB: round(peakHeap, 1), SettleS: round(last.at.Sub(b.mgr.started).Seconds(), 1)}
	b.logf("scenario 8: %d ServiceTokens: peak RSS %.1f MiB, RSS %.1f (anon %.1f, file %.1f), heap in use %.1f, peak heap %.1f",
		total, p.PeakRSSMiB, p.RSSMiB, p.AnonMiB, p.FileMiB, p.HeapMiB, p.PeakHeapMiB)
	return p, nil
}

// describeMemory is the manager's memory now, for a row's notes.
func (m *manager) describeMemory() string {
	pm, err := m.procMemory()
	if err != nil {
		return "memory now unknown: " + err.Error()
	}
	return fmt.Sprintf("after settling: RSS %.1f MiB (anon %.1f, file-backed %.1f), heap in use %.1f MiB",
		pm.rss, pm.anon, pm.file, m.latest().heap/(1<<20))
}

// fit is the least-squares line y = a + b·x.
func fit(xs, ys []float64) (a, b float64) {
	n := float64(len(xs))
	if len(xs) < 2 {
		return math.NaN(), math.NaN()
	}
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx, sy, sxx, sxy = sx+xs[i], sy+ys[i], sxx+xs[i]*xs[i], sxy+xs[i]*ys[i]
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return math.NaN(), math.NaN()
	}
	b = (n*sxy - sx*sy) / d
	return (sy - b*sx) / n, b
}

func (b *bench) scaleResult(points []scalePoint) error {
	if len(points) == 0 {
		return nil
	}
	var xs, peak, rss, heap []float64
	var parts []string
	met := true
	for _, p := range points {
		xs = append(xs, float64(p.Total))
		peak, rss, heap = append(peak, p.PeakRSSMiB), append(rss, p.RSSMiB), append(heap, p.HeapMiB)
		parts = append(parts, fmt.Sprintf("%d ServiceTokens: peak RSS %.1f, RSS %.1f (file-backed %.1f), heap in use %.1f, peak heap %.1f MiB, settled after %.0fs",
			p.Total, p.PeakRSSMiB, p.RSSMiB, p.FileMiB, p.HeapMiB, p.PeakHeapMiB, p.SettleS))
		met = met && p.PeakRSSMiB <= scaleLimitMiB
	}
	aPeak, bPeak := fit(xs, peak)
	aRSS, bRSS := fit(xs, rss)
	aHeap, bHeap := fit(xs, heap)
	slope := "one size: no slope"
	if len(points) > 1 {
		slope = fmt.Sprintf("slope (least squares) per 1,000 ServiceTokens: peak RSS %.2f MiB (intercept %.1f), RSS %.2f MiB (intercept %.1f), heap in use %.2f MiB (intercept %.1f)",
			1000*bPeak, aPeak, 1000*bRSS, aRSS, 1000*bHeap, aHeap)
	}
	last := points[len(points)-1]
	b.results = append(b.results, Result{Scenario: "8 scale", N: last.Total,
		PeakRSSMiB: last.PeakRSSMiB, PeakHeapMiB: last.PeakHeapMiB,
		Target: fmt.Sprintf("peak RSS ≤ %d MiB (the install's memory limit) at every size; slope reported", scaleLimitMiB), Met: met,
		Notes: fmt.Sprintf("a fresh manager per size, measured once every ServiceToken is reconciled and the queue is quiet %s; %s; %s",
			b.c.settle, strings.Join(parts, "; "), slope),
		Extra: map[string]any{"points": points, "peak_rss_mib_per_1000": nanToNil(round(1000*bPeak, 2)),
			"rss_mib_per_1000": nanToNil(round(1000*bRSS, 2)), "heap_mib_per_1000": nanToNil(round(1000*bHeap, 2))}})
	return nil
}

func nanToNil(v float64) any {
	if math.IsNaN(v) {
		return nil
	}
	return v
}
