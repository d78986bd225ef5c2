package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/client-go/rest"
)

// fakeReviews answers TokenReviews for "good" (user alice, group g) and
// "reader" (user bob), and allows only alice to get /metrics.
type fakeReviews struct {
	tokenCalls, accessCalls atomic.Int32
	fail                    atomic.Int32 // calls still to fail
	lastSpec                authorizationv1.SubjectAccessReviewSpec
}

func (f *fakeReviews) token(_ context.Context, tr *authenticationv1.TokenReview) (*authenticationv1.TokenReview, error) {
	f.tokenCalls.Add(1)
	if f.fail.Add(-1) >= 0 {
		return nil, errors.New("connection refused")
	}
	out := tr.DeepCopy()
	switch tr.Spec.Token {
	case "good":
		out.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: authenticationv1.UserInfo{
			Username: "alice", UID: "1", Groups: []string{"g"}, Extra: map[string]authenticationv1.ExtraValue{"scopes": {"a"}}}}
	case "reader":
		out.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: authenticationv1.UserInfo{Username: "bob"}}
	default:
		out.Status = authenticationv1.TokenReviewStatus{Error: "invalid token"}
	}
	return out, nil
}

func (f *fakeReviews) access(_ context.Context, sar *authorizationv1.SubjectAccessReview) (*authorizationv1.SubjectAccessReview, error) {
	f.accessCalls.Add(1)
	f.lastSpec = sar.Spec
	out := sar.DeepCopy()
	nr := sar.Spec.NonResourceAttributes
	out.Status.Allowed = sar.Spec.User == "alice" && nr != nil && nr.Path == "/metrics" && nr.Verb == "get"
	return out, nil
}

func TestMetricsAuthFilter(t *testing.T) {
	f := &fakeReviews{}
	now := time.Unix(1_000_000, 0)
	a := newMetricsAuth(f.token, f.access, func() time.Time { return now }, []time.Duration{time.Millisecond, time.Millisecond})
	var served atomic.Int32
	h, err := a.filter(logr.Discard(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			t.Error("the token reached the handler")
		}
		served.Add(1)
	}))
	if err != nil {
		t.Fatal(err)
	}
	get := func(path, authz string) int {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}

	for _, authz := range []string{"", "Basic Zm9vOmJhcg==", "Bearer", "Bearer  good"} {
		if code := get("/metrics", authz); code != http.StatusUnauthorized {
			t.Errorf("Authorization %q: %d, want 401", authz, code)
		}
	}
	if n := f.tokenCalls.Load(); n != 0 {
		t.Errorf("%d TokenReviews without a bearer token", n)
	}
	if code := get("/metrics", "Bearer bad"); code != http.StatusUnauthorized {
		t.Errorf("invalid token: %d, want 401", code)
	}
	if code := get("/metrics", "Bearer reader"); code != http.StatusForbidden {
		t.Errorf("user without the right: %d, want 403", code)
	}
	if code := get("/metrics", "bearer good"); code != http.StatusOK || served.Load() != 1 {
		t.Errorf("allowed user: %d (served %d), want 200", code, served.Load())
	}
	want := authorizationv1.SubjectAccessReviewSpec{User: "alice", UID: "1", Groups: []string{"g"},
		Extra:                 map[string]authorizationv1.ExtraValue{"scopes": {"a"}},
		NonResourceAttributes: &authorizationv1.NonResourceAttributes{Path: "/metrics", Verb: "get"}}
	if got := f.lastSpec; got.User != want.User || got.UID != want.UID || len(got.Groups) != 1 || got.Extra["scopes"][0] != "a" ||
		*got.NonResourceAttributes != *want.NonResourceAttributes {
		t.Errorf("SubjectAccessReview spec %+v, want %+v", got, want)
	}
	if code := get("/other", "Bearer good"); code != http.StatusForbidden {
		t.Errorf("other path: %d, want 403", code)
	}

	// Cached: no new review within the TTLs, new ones after.
	tokens, access := f.tokenCalls.Load(), f.accessCalls.Load()
	for range 3 {
		get("/metrics", "Bearer good")
		get("/metrics", "Bearer bad")
	}
	if f.tokenCalls.Load() != tokens || f.accessCalls.Load() != access {
		t.Errorf("reviews within the TTL: %d token, %d access; want %d, %d", f.tokenCalls.Load(), f.accessCalls.Load(), tokens, access)
	}
	now = now.Add(tokenReviewTTL + time.Second)
	get("/metrics", "Bearer good")
	if f.tokenCalls.Load() != tokens+1 || f.accessCalls.Load() != access {
		t.Errorf("after the token TTL: %d token, %d access reviews; want %d, %d", f.tokenCalls.Load(), f.accessCalls.Load(), tokens+1, access)
	}
	now = now.Add(allowedTTL)
	get("/metrics", "Bearer good")
	if f.accessCalls.Load() != access+1 {
		t.Errorf("after the allowed TTL: %d access reviews, want %d", f.accessCalls.Load(), access+1)
	}

	// Failures are retried, then answered 500 and not cached.
	now = now.Add(allowedTTL)
	f.fail.Store(1)
	if code := get("/metrics", "Bearer good"); code != http.StatusOK {
		t.Errorf("one failed TokenReview: %d, want 200 after a retry", code)
	}
	now = now.Add(allowedTTL)
	f.fail.Store(10)
	if code := get("/metrics", "Bearer good"); code != http.StatusInternalServerError {
		t.Errorf("failing TokenReviews: %d, want 500", code)
	}
	f.fail.Store(0)
	if code := get("/metrics", "Bearer good"); code != http.StatusOK {
		t.Errorf("after the API server came back: %d, want 200", code)
	}
}

func TestMetricsAuthFilterBuildsClients(t *testing.T) {
	if _, err := metricsAuthFilter(&rest.Config{Host: "https://127.0.0.1:1"}, http.DefaultClient); err != nil {
		t.Fatal(err)
	}
}
