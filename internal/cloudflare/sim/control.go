package sim

import (
	"encoding/json"
	"io"
	"net/http"
)

// controlMux serves the unauthenticated /_sim endpoints. They exist for
// tests and demos that run the simulator as a separate process (cmd/cfsim);
// in-process tests can call the Go methods instead.
func (s *Server) controlMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_sim/tokens", func(w http.ResponseWriter, _ *http.Request) {
		writeControl(w, http.StatusOK, s.Tokens())
	})
	mux.HandleFunc("DELETE /_sim/tokens/{id}", func(w http.ResponseWriter, r *http.Request) {
		if !s.DeleteTokenOutOfBand(r.PathValue("id")) {
			writeControl(w, http.StatusNotFound, map[string]string{"error": "no such token"})
			return
		}
		writeControl(w, http.StatusOK, map[string]bool{"deleted": true})
	})
	// A rotation in the dashboard: the token's secret changes, the old one
	// stops working at once (no grace).
	mux.HandleFunc("POST /_sim/tokens/{id}/rotate", func(w http.ResponseWriter, r *http.Request) {
		if !s.RotateTokenOutOfBand(r.PathValue("id")) {
			writeControl(w, http.StatusNotFound, map[string]string{"error": "no such token"})
			return
		}
		writeControl(w, http.StatusOK, map[string]bool{"rotated": true})
	})
	// verify answers like Access would: 200 to let the request in, 403 not.
	mux.HandleFunc("GET /_sim/verify", func(w http.ResponseWriter, r *http.Request) {
		if s.authenticateAccess(r.Header.Get("CF-Access-Client-Id"), r.Header.Get("CF-Access-Client-Secret")) {
			writeControl(w, http.StatusOK, map[string]bool{"allowed": true})
			return
		}
		writeControl(w, http.StatusForbidden, map[string]bool{"allowed": false})
	})
	mux.HandleFunc("GET /_sim/stats", func(w http.ResponseWriter, _ *http.Request) {
		writeControl(w, http.StatusOK, s.Stats())
	})
	mux.HandleFunc("POST /_sim/reset-stats", func(w http.ResponseWriter, _ *http.Request) {
		s.ResetStats()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /_sim/requests", func(w http.ResponseWriter, _ *http.Request) {
		writeControl(w, http.StatusOK, s.RequestLog())
	})
	mux.HandleFunc("GET /_sim/issued-secrets", func(w http.ResponseWriter, _ *http.Request) {
		writeControl(w, http.StatusOK, s.IssuedSecrets())
	})
	mux.HandleFunc("GET /_sim/faults", func(w http.ResponseWriter, _ *http.Request) {
		writeControl(w, http.StatusOK, s.CurrentFaults())
	})
	mux.HandleFunc("PUT /_sim/faults", func(w http.ResponseWriter, r *http.Request) {
		var f Faults
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		if err == nil {
			err = json.Unmarshal(body, &f)
		}
		if err != nil {
			writeControl(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		s.SetFaults(f)
		writeControl(w, http.StatusOK, s.CurrentFaults())
	})
	return mux
}

func writeControl(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
