package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

const (
	defaultDuration = "8760h"
	maxPerPage      = 1000
	maxBodyBytes    = 1 << 20
)

// tokenBody is the create and update (PUT) body. Pointers tell an absent
// field from a zero one: PUT changes only what it carries.
type tokenBody struct {
	Name                          *string  `json:"name"`
	Duration                      *string  `json:"duration"`
	Enabled                       *bool    `json:"enabled"`
	ClientSecretVersion           *float64 `json:"client_secret_version"`
	PreviousClientSecretExpiresAt *string  `json:"previous_client_secret_expires_at"`
}

// parsedBody is a tokenBody after validation.
type parsedBody struct {
	tokenBody
	duration    time.Duration // when Duration is set and not forever
	forever     bool
	version     int
	prevExpires time.Time // zero when absent
}

// parseTokenBody validates every field before anything is changed, so a 400
// never leaves a half-applied update behind.
func parseTokenBody(body []byte, required bool) (parsedBody, *response) {
	var p parsedBody
	if r := decodeJSON(body, &p.tokenBody, required); r != nil {
		return p, r
	}
	if p.Name != nil && *p.Name == "" {
		r := invalid("name must not be empty")
		return p, &r
	}
	if p.Duration != nil {
		d, forever, err := parseDuration(*p.Duration)
		if err != nil {
			r := invalid(err.Error())
			return p, &r
		}
		p.duration, p.forever = d, forever
	}
	if v := p.ClientSecretVersion; v != nil {
		if *v < 1 || *v > math.MaxInt32 || *v != math.Trunc(*v) {
			r := invalid(fmt.Sprintf("client_secret_version must be a whole number from 1, got %v", *v))
			return p, &r
		}
		p.version = int(*v)
	}
	if s := p.PreviousClientSecretExpiresAt; s != nil {
		t, err := parseTimestamp(*s)
		if err != nil {
			r := invalid(err.Error())
			return p, &r
		}
		p.prevExpires = t
	}
	return p, nil
}

// decodeJSON reads a JSON object into v with messages a human can act on.
func decodeJSON(body []byte, v any, required bool) *response {
	if len(bytes.TrimSpace(body)) == 0 {
		if !required {
			return nil
		}
		r := invalid("request body is required: a JSON object")
		return &r
	}
	err := json.Unmarshal(body, v)
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	var r response
	switch {
	case errors.As(err, &te) && te.Field == "":
		r = invalid("request body must be a JSON object, got " + te.Value)
	case errors.As(err, &te):
		r = invalid(fmt.Sprintf("invalid value for %q: want %s, got %s", te.Field, jsonType(te.Type.String()), te.Value))
	default:
		r = invalid("request body is not valid JSON: " + err.Error())
	}
	return &r
}

func jsonType(goType string) string {
	switch goType {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "float64":
		return "a number"
	}
	return goType
}

// parseDuration accepts what Cloudflare documents: a Go duration or "forever".
func parseDuration(s string) (d time.Duration, forever bool, err error) {
	if s == "forever" {
		return 0, true, nil
	}
	d, err = time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, false, fmt.Errorf(`invalid duration %q: want a positive duration such as "300ms" or "2h45m" (units ns, us, µs, ms, s, m, h) or "forever"`, s)
	}
	return d, false, nil
}

func parseTimestamp(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf(`previous_client_secret_expires_at %q is not an RFC 3339 date-time such as "2014-01-01T05:20:00.12345Z"`, s)
	}
	return t.UTC(), nil
}

// intParam reads an optional positive integer query parameter.
func intParam(q url.Values, name string, def, maxValue int) (int, *response) {
	s := q.Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxValue {
		r := invalid(fmt.Sprintf("%s must be an integer from 1 to %d, got %q", name, maxValue, s))
		return 0, &r
	}
	return n, nil
}

func (s *Server) list(rt route, q url.Values) response {
	page, perPage := 1, 0
	var f listFilter
	var r *response
	switch {
	case !rt.zone:
		if page, r = intParam(q, "page", 1, math.MaxInt32); r != nil {
			return *r
		}
		if perPage, r = intParam(q, "per_page", maxPerPage, maxPerPage); r != nil {
			return *r
		}
		f = listFilter{name: q.Get("name"), search: q.Get("search")}
	case s.opts.ZonePageSize > 0:
		// The zone list documents no query parameters; paged, it honours
		// page alone.
		if page, r = intParam(q, "page", 1, math.MaxInt32); r != nil {
			return *r
		}
		perPage = s.opts.ZonePageSize
	}
	s.mu.RLock()
	items, total := s.st.page(rt.scope(), f, page, perPage)
	s.mu.RUnlock()

	out := make([]tokenJSON, len(items))
	for i, t := range items {
		out[i] = publicToken(t)
	}
	info := &resultInfo{Page: page, PerPage: perPage, Count: len(out), TotalCount: total, omitTotals: s.opts.OmitTotalPages}
	if perPage == 0 {
		info.PerPage = len(out)
		info.TotalPages = 1
	} else {
		info.TotalPages = (total + perPage - 1) / perPage
	}
	resp := ok(http.StatusOK, out)
	resp.body.ResultInfo = info
	return resp
}

func (s *Server) get(rt route) response {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e := s.st.get(rt.scope(), rt.tokenID)
	if e == nil {
		return notFound()
	}
	return ok(http.StatusOK, publicToken(e.state))
}

func (s *Server) create(rt route, body []byte) response {
	p, r := parseTokenBody(body, true)
	if r != nil {
		return *r
	}
	if p.Name == nil {
		return invalid("name is required")
	}
	if p.Duration == nil {
		def := defaultDuration
		p.Duration = &def
		p.duration, _, _ = parseDuration(def)
	}
	now := s.now()
	t := TokenState{
		Name:                          *p.Name,
		Duration:                      *p.Duration,
		Enabled:                       p.Enabled == nil || *p.Enabled,
		CreatedAt:                     now,
		UpdatedAt:                     now,
		ClientSecretVersion:           max(p.version, 1),
		PreviousClientSecretExpiresAt: p.prevExpires, // no previous secret yet: no effect
	}
	if rt.zone {
		t.ZoneID = rt.scopeID
	} else {
		t.AccountID = rt.scopeID
	}
	if !p.forever {
		t.ExpiresAt = now.Add(p.duration)
	}
	s.mu.Lock()
	t.ID, t.ClientID, t.ClientSecret = s.ids.uuid(), s.ids.clientID(), s.ids.secret()
	s.st.insert(t)
	s.mu.Unlock()
	resp := withSecret(http.StatusCreated, t)
	resp.created = t.ID
	return resp
}

func (s *Server) update(rt route, body []byte) response {
	p, r := parseTokenBody(body, true)
	if r != nil {
		return *r
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.st.get(rt.scope(), rt.tokenID)
	if e == nil {
		return notFound()
	}
	now := s.now()
	t := &e.state
	if p.Name != nil {
		s.st.rename(e, *p.Name)
	}
	if p.Duration != nil {
		if !s.opts.ResetExpiryOnlyOnDurationChange || *p.Duration != t.Duration {
			t.ExpiresAt = time.Time{}
			if !p.forever {
				t.ExpiresAt = now.Add(p.duration)
			}
		}
		t.Duration = *p.Duration
	}
	if p.Enabled != nil {
		t.Enabled = *p.Enabled
	}
	rotated := false
	if p.ClientSecretVersion != nil {
		if p.version > t.ClientSecretVersion {
			s.rotateLocked(t, p.prevExpires, now)
			rotated = true
		}
		t.ClientSecretVersion = p.version
	}
	if p.PreviousClientSecretExpiresAt != nil && !rotated {
		// Later extends the grace period, past revokes the previous secret.
		t.PreviousClientSecretExpiresAt = p.prevExpires
	}
	t.UpdatedAt = now
	if rotated && s.opts.SecretInUpdateResponse {
		// The new secret rides in the create shape, as from rotate.
		return withSecret(http.StatusOK, *t)
	}
	return ok(http.StatusOK, publicToken(*t))
}

func (s *Server) delete(rt route) response {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.st.get(rt.scope(), rt.tokenID)
	if e == nil {
		return notFound()
	}
	s.st.remove(e)
	return ok(http.StatusOK, publicToken(e.state))
}

func (s *Server) refresh(rt route) response {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.st.get(rt.scope(), rt.tokenID)
	if e == nil {
		return notFound()
	}
	now := s.now()
	t := &e.state
	t.ExpiresAt = s.opts.Refresh.expiry(*t, now)
	t.UpdatedAt = now
	return ok(http.StatusOK, publicToken(*t))
}

func (s *Server) rotate(rt route, body []byte) response {
	var in struct {
		PreviousClientSecretExpiresAt *string `json:"previous_client_secret_expires_at"`
	}
	if r := decodeJSON(body, &in, false); r != nil {
		return *r
	}
	var prev time.Time
	if in.PreviousClientSecretExpiresAt != nil {
		t, err := parseTimestamp(*in.PreviousClientSecretExpiresAt)
		if err != nil {
			return invalid(err.Error())
		}
		prev = t
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.st.get(rt.scope(), rt.tokenID)
	if e == nil {
		return notFound()
	}
	now := s.now()
	s.rotateLocked(&e.state, prev, now)
	e.state.ClientSecretVersion++
	e.state.UpdatedAt = now
	return withSecret(http.StatusOK, e.state)
}

// rotateLocked issues a new secret and keeps the old one until prevExpires
// (now when zero: revoked at once). Only one previous secret is kept.
// The caller holds s.mu and sets the version.
func (s *Server) rotateLocked(t *TokenState, prevExpires, now time.Time) {
	if prevExpires.IsZero() {
		prevExpires = now
	}
	t.PreviousClientSecret = t.ClientSecret
	t.PreviousClientSecretExpiresAt = prevExpires
	t.ClientSecret = s.ids.secret()
}
