package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authenticationclient "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authorizationclient "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/rest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// Caches of the metrics endpoint's reviews: the TTLs of controller-runtime's
// filters.WithAuthenticationAndAuthorization.
const (
	tokenReviewTTL = time.Minute
	allowedTTL     = 5 * time.Minute
	deniedTTL      = 30 * time.Second
	// reviewCacheSize bounds each cache; a full cache is emptied (callers are
	// few: Prometheus and a person now and then).
	reviewCacheSize = 1024
)

// reviewBackoff are the waits between attempts of a review that failed (not
// one that answered no): 5 attempts, as the API server's webhook defaults.
var reviewBackoff = []time.Duration{500 * time.Millisecond, 750 * time.Millisecond, 1125 * time.Millisecond, 1688 * time.Millisecond}

// tokenReviewer and accessReviewer are the two API calls the filter makes.
type (
	tokenReviewer  func(ctx context.Context, tr *authenticationv1.TokenReview) (*authenticationv1.TokenReview, error)
	accessReviewer func(ctx context.Context, sar *authorizationv1.SubjectAccessReview) (*authorizationv1.SubjectAccessReview, error)
)

// metricsAuthFilter protects the metrics endpoint as controller-runtime's
// filters.WithAuthenticationAndAuthorization does: the caller's bearer token
// is checked with a TokenReview, and its right to the request (verb and
// path, e.g. get /metrics) with a SubjectAccessReview, both cached. It is
// written against client-go's typed clients instead of k8s.io/apiserver's
// delegating authenticator and authorizer: those pull CEL, gRPC and
// OpenTelemetry into the binary, about a third of its size, and the
// binary's pages are resident (about 18 MiB of RSS; docs/performance.md).
func metricsAuthFilter(cfg *rest.Config, httpClient *http.Client) (metricsserver.Filter, error) {
	authn, err := authenticationclient.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, err
	}
	authz, err := authorizationclient.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, err
	}
	return newMetricsAuth(
		func(ctx context.Context, tr *authenticationv1.TokenReview) (*authenticationv1.TokenReview, error) {
			return authn.TokenReviews().Create(ctx, tr, metav1.CreateOptions{})
		},
		func(ctx context.Context, sar *authorizationv1.SubjectAccessReview) (*authorizationv1.SubjectAccessReview, error) {
			return authz.SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		}, time.Now, reviewBackoff).filter, nil
}

type metricsAuth struct {
	reviewToken  tokenReviewer
	reviewAccess accessReviewer
	now          func() time.Time
	backoff      []time.Duration
	hashKey      []byte // per process: cached keys reveal no token

	mu     sync.Mutex
	tokens map[string]tokenEntry
	access map[string]accessEntry
}

type tokenEntry struct {
	user          *authenticationv1.UserInfo // nil: not authenticated
	expires       time.Time
	authenticated bool
}

type accessEntry struct {
	allowed bool
	reason  string
	expires time.Time
}

func newMetricsAuth(rt tokenReviewer, ra accessReviewer, now func() time.Time, backoff []time.Duration) *metricsAuth {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return &metricsAuth{reviewToken: rt, reviewAccess: ra, now: now, backoff: backoff, hashKey: key,
		tokens: map[string]tokenEntry{}, access: map[string]accessEntry{}}
}

func (a *metricsAuth) filter(log logr.Logger, handler http.Handler) (http.Handler, error) {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		token, ok := bearerToken(req)
		if !ok {
			log.V(4).Info("Authentication failed: no bearer token")
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		user, authenticated, err := a.authenticate(req.Context(), token)
		if err != nil {
			log.Error(err, "Authentication failed")
			http.Error(w, "Authentication failed", http.StatusInternalServerError)
			return
		}
		if !authenticated {
			log.V(4).Info("Authentication failed")
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		allowed, reason, err := a.authorize(req.Context(), user, strings.ToLower(req.Method), req.URL.Path)
		if err != nil {
			msg := fmt.Sprintf("Authorization for user %s failed", user.Username)
			log.Error(err, msg)
			http.Error(w, msg, http.StatusInternalServerError)
			return
		}
		if !allowed {
			msg := fmt.Sprintf("Authorization denied for user %s", user.Username)
			log.V(4).Info(fmt.Sprintf("%s: %s", msg, reason))
			http.Error(w, msg, http.StatusForbidden)
			return
		}
		req.Header.Del("Authorization") // nothing behind the filter needs it
		handler.ServeHTTP(w, req)
	}), nil
}

// bearerToken reads "Authorization: Bearer <token>" as the API server does.
func bearerToken(req *http.Request) (string, bool) {
	auth := strings.TrimSpace(req.Header.Get("Authorization"))
	parts := strings.SplitN(auth, " ", 3)
	if len(parts) < 2 || !strings.EqualFold(parts[0], "bearer") || parts[1] == "" {
		return "", false
	}
	return parts[1], true
}

func (a *metricsAuth) hash(parts ...string) string {
	m := hmac.New(sha256.New, a.hashKey)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return hex.EncodeToString(m.Sum(nil))
}

// authenticate reviews a token; answers (authenticated or not) are cached
// for tokenReviewTTL, errors are not.
func (a *metricsAuth) authenticate(ctx context.Context, token string) (*authenticationv1.UserInfo, bool, error) {
	key := a.hash(token)
	a.mu.Lock()
	e, ok := a.tokens[key]
	a.mu.Unlock()
	if ok && a.now().Before(e.expires) {
		return e.user, e.authenticated, nil
	}
	var res *authenticationv1.TokenReview
	err := a.retry(ctx, func() (err error) {
		res, err = a.reviewToken(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}})
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("TokenReview: %w", err)
	}
	e = tokenEntry{expires: a.now().Add(tokenReviewTTL), authenticated: res.Status.Authenticated}
	if e.authenticated {
		u := res.Status.User
		e.user = &u
	}
	a.mu.Lock()
	putBounded(a.tokens, key, e)
	a.mu.Unlock()
	return e.user, e.authenticated, nil
}

// authorize asks whether user may use verb on the non-resource path; an
// allowed answer is cached for allowedTTL, any other for deniedTTL.
func (a *metricsAuth) authorize(ctx context.Context, user *authenticationv1.UserInfo, verb, path string) (bool, string, error) {
	spec := authorizationv1.SubjectAccessReviewSpec{
		User: user.Username, UID: user.UID, Groups: user.Groups,
		NonResourceAttributes: &authorizationv1.NonResourceAttributes{Path: path, Verb: verb},
	}
	if len(user.Extra) > 0 {
		spec.Extra = make(map[string]authorizationv1.ExtraValue, len(user.Extra))
		for k, v := range user.Extra {
			spec.Extra[k] = authorizationv1.ExtraValue(v)
		}
	}
	raw, err := json.Marshal(spec)
	if err != nil {
		return false, "", err
	}
	key := a.hash(string(raw))
	a.mu.Lock()
	e, ok := a.access[key]
	a.mu.Unlock()
	if ok && a.now().Before(e.expires) {
		return e.allowed, e.reason, nil
	}
	var res *authorizationv1.SubjectAccessReview
	err = a.retry(ctx, func() (err error) {
		res, err = a.reviewAccess(ctx, &authorizationv1.SubjectAccessReview{Spec: spec})
		return err
	})
	if err != nil {
		return false, "", fmt.Errorf("SubjectAccessReview: %w", err)
	}
	if res.Status.Allowed && res.Status.Denied {
		return false, res.Status.Reason, fmt.Errorf("SubjectAccessReview returned both allowed and denied")
	}
	e = accessEntry{allowed: res.Status.Allowed && !res.Status.Denied, reason: res.Status.Reason}
	ttl := deniedTTL
	if e.allowed {
		ttl = allowedTTL
	}
	e.expires = a.now().Add(ttl)
	a.mu.Lock()
	putBounded(a.access, key, e)
	a.mu.Unlock()
	return e.allowed, e.reason, nil
}

// retry calls f until it succeeds, waiting a.backoff between attempts.
func (a *metricsAuth) retry(ctx context.Context, f func() error) error {
	err := f()
	for _, d := range a.backoff {
		if err == nil || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(d):
		}
		err = f()
	}
	return err
}

// putBounded stores v, emptying the map first when it is full.
func putBounded[V any](m map[string]V, k string, v V) {
	if len(m) >= reviewCacheSize {
		clear(m)
	}
	m[k] = v
}
