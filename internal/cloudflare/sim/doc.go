// Package sim is an in-memory HTTP server that behaves like Cloudflare's
// Access service-token API (the 12 endpoints under /client/v4 described in
// /work/shared/cloudflare/service-tokens.openapi.json and API-NOTES.md).
// Every test, demo and benchmark of the operator uses it as the yardstick, so
// it follows the published contract exactly and makes every behaviour that
// Cloudflare leaves open an explicit, documented choice.
//
// A *Server is an http.Handler serving two trees:
//
//   - /client/v4/...: the Cloudflare API (auth, rate limit, faults, envelope).
//   - /_sim/...: unauthenticated control endpoints for tests and demos:
//     GET /_sim/tokens (every token including secrets: the test oracle),
//     GET /_sim/verify (CF-Access-Client-Id / CF-Access-Client-Secret headers;
//     200 if Access would let them in, else 403), GET /_sim/stats,
//     GET and PUT /_sim/faults, DELETE /_sim/tokens/{id} (out-of-band delete),
//     POST /_sim/tokens/{id}/rotate (out-of-band rotation, no grace),
//     POST /_sim/reset-stats, GET /_sim/requests (each request with the
//     CredentialID that made it, never the credential), GET /_sim/issued-secrets.
//
// The Go API offers the same oracle: Tokens, Verify, Stats, RequestLog,
// IssuedSecrets, SetFaults, DeleteTokenOutOfBand, UpdateTokenOutOfBand, RotateTokenOutOfBand and
// ResetStats; SpendBudget and UserOf play other clients of a user's budget.
//
// # Facts implemented as published or observed (API-NOTES.md)
//
//   - Envelope {success, errors, messages, result}; failures carry
//     success:false, result:null and at least one error. Nothing else is
//     added: no field the schema does not document, anywhere, but the
//     error_chain Cloudflare sends with a 6003.
//   - create answers 201, every other success 200. Create and rotate answer
//     in the shape of access_create_response: id, client_id, client_secret,
//     name, duration, enabled, created_at, updated_at, and no expires_at or
//     last_seen_at. Get, list, update, delete and refresh answer with the
//     token object (with expires_at, never client_secret).
//   - duration is a Go duration or "forever", default "8760h"; enabled
//     defaults to true; a disabled token keeps its identity but neither secret
//     authenticates.
//   - rotate issues a new secret; the previous one stays valid until
//     previous_client_secret_expires_at (default: now, i.e. revoked at once),
//     which PUT can change later. Incrementing client_secret_version with PUT
//     rotates too.
//   - PUT with a duration resets expires_at relative to the time of the PUT.
//   - refresh extends the lifetime by one year (8760h), whatever the token's
//     duration.
//   - Account list: name (exact), search, page (default 1), per_page (default
//     1000, max 1000), result_info. Zone list: no query parameters.
//   - 401 (missing or bad credentials) and 403 (read-only API token writing)
//     both carry {"code":10000,"message":"Authentication error"}.
//   - Malformed credentials are a 400 {"code":6003,"message":"Invalid request
//     headers"} whose error_chain names the header: 6111 "Invalid format for
//     Authorization header", 6103 "Invalid format for X-Auth-Key header",
//     6102 "Invalid format for X-Auth-Email header".
//   - An unknown account or zone is a 404 with code 7003 "Could not route to
//     <path below /client/v4>, perhaps your object identifier is invalid?";
//     a path that is no endpoint is a 404 with 7000 "No route for that URI".
//   - The rate limit is per user: a budget (default 1200 per 5 minutes)
//     shared by every credential of the user, API tokens with the same
//     APIToken.User and the legacy key whose Email that is. Exceeding it
//     blocks every call of the user for Options.Lockout (default 5 minutes)
//     counted from the request that exceeded it: 429 with Retry-After (the
//     seconds left, rounded up, at least 1). Unless the budget is unlimited,
//     every response to an authenticated request carries
//     Ratelimit: "default";r=<remaining>;t=<seconds until the window resets>
//     (during a lockout r=0 and t the lockout left) and
//     Ratelimit-Policy: "default";q=<quota>;w=<window seconds>.
//
// # Choices where Cloudflare's behaviour is unknown
//
//   - expires_at of a "forever" token: the field is omitted (the schema's
//     timestamp is not nullable, so null would break the contract); the
//     operator's Token.ExpiresAt is then zero. last_seen_at is likewise omitted
//     until the token has been used (see /_sim/verify).
//   - refresh: Options.Refresh picks where the year counts from. The default
//     RefreshYearFromExpiry is old expires_at + 8760h, or now + 8760h if the
//     token has already expired (or has no expiry); RefreshYearFromNow is
//     now + 8760h. RefreshDurationFromExpiry (old expiry + the token's
//     duration, the simulator's former default) and RefreshDurationFromNow
//     (now + duration) play an API that does not follow its docs. RefreshModes lists
//     all four. Refreshing a "forever" token changes only updated_at, in
//     every mode.
//   - PUT carrying a duration resets expires_at to now + duration even when
//     the duration is unchanged (the docs' literal reading).
//     Options.ResetExpiryOnlyOnDurationChange resets it only when the value
//     differs from the stored one.
//   - PUT that increments client_secret_version rotates the secret but the
//     response does not carry the new client_secret (so that secret is lost
//     to the caller; prefer the rotate endpoint). Options.SecretInUpdateResponse
//     includes it, answering in the create shape as rotate does (so without
//     expires_at). The published update schema has no client_secret, so the
//     contract validator reports that response. A version equal to or lower
//     than the current one is stored as is and does not rotate.
//   - rotate does not change expires_at and increments client_secret_version.
//     Only one previous secret is kept: a second rotate during a grace period
//     drops the older previous secret.
//   - Names need not be unique; the name filter returns every exact
//     (case-sensitive) match. search is a case-insensitive substring match on
//     name or client_id.
//   - List order is creation order (oldest first), stable across pages.
//     total_pages is ceil(total_count/per_page), so 0 for an empty list;
//     count is the number of results on the page. A page past the end is an
//     empty result with success:true. Options.OmitTotalPages leaves
//     total_pages and total_count out of every list's result_info, so a
//     client must stop on an empty page.
//   - per_page outside 1..1000, page < 1 or non-integer values are a 400
//     rather than being clamped (the schema caps per_page at 1000).
//   - The zone list ignores query parameters and returns every token of the
//     zone on one page (result_info page 1, per_page = count, total_pages 1).
//     Options.ZonePageSize pages it at that size, honouring page alone (a bad
//     page is a 400 as for the account list; per_page is still ignored).
//   - duration must be positive; there is no maximum besides what Go's
//     time.ParseDuration accepts. name must be non-empty; no maximum length
//     (the body is capped at 1 MiB).
//   - Malformed credentials: an Authorization header (looked at first, even
//     when legacy headers are present too) whose scheme is not Bearer
//     (case-insensitive) or whose token is empty or has a character outside
//     [A-Za-z0-9._~+/=-]; an X-Auth-Email without '@'; an X-Auth-Key with a
//     character outside [A-Za-z0-9] (Cloudflare's global keys are hex). Both
//     legacy entries appear in error_chain when both headers are malformed. A
//     missing header is a 401, not a 400. Format is checked before the
//     credential is looked up, in open mode too.
//   - Other error codes are not published. The simulator uses 7001 (method
//     not allowed, 405) and invented codes 10400 (invalid request, 400), 10404
//     (token not found, 404) and 10429 (rate limited; Cloudflare's reported
//     code 971 is below the schema's minimum of 1000). Clients must key on the
//     HTTP status plus the absence of 7000/7003.
//   - A token ID that is not a UUID, or a token of another account or zone,
//     is a 404 like an unknown one.
//   - Zone endpoints accept API tokens as well as the legacy email+key (the
//     schema lists only email+key for zones).
//   - With no APITokens and no APIKeys configured, any well-formed credential
//     is accepted with write permission, each its own user (a Bearer token;
//     a legacy email); missing credentials are still a 401.
//   - Rate-limit mechanics: a user's fixed window opens with its first
//     request (or SpendBudget charge) and lasts RateLimit.Period. A request
//     exceeds the budget when the window's requests, charges and outside
//     spending (it included) pass the quota. Refused requests do not count,
//     and a fresh window opens when a lockout ends. A user name is an
//     APIToken's User, the token itself when User is empty (UserOf), or an
//     APIKey's Email.
//   - Outside consumers (Options.Outside) spend Fraction × quota evenly over
//     every window of their user (an empty User: of every user): by now
//     floor(Fraction × quota × elapsed/period) of the current window,
//     computed from the clock at request time, so a fake clock makes it
//     deterministic. SpendBudget charges n requests at once. Both show in the
//     headers and can lock the user out. Outside spending goes on while no
//     one else calls: when it alone crosses the quota (after a burst took
//     the rest of the window early), the lockout is dated from the moment it
//     crossed and found at the user's next request (or charge).
//     Stats.RateLimited counts every 429 from the budget, Stats.Lockouts each
//     lockout.
//   - Authentication (format, then identity) comes before the rate limit,
//     which comes before routing, the unknown-account check (7003), the
//     read-only check (403), body validation and the token lookup (404). So a
//     write to an unknown but UUID-shaped token ID (say the nil UUID) tells a
//     read-only token (403) from a writable one (404, not 7003), and a
//     request with malformed or missing credentials does not spend a budget.
//     The 200/s per-IP limit is not simulated.
//   - /_sim/verify stamps last_seen_at on success (it stands for a request
//     through Access); Verify itself has no side effects.
//
// # Faults
//
// Options.Faults (and SetFaults, PUT /_sim/faults) inject failures into
// /client/v4 requests with probability Faults.Rate, choosing uniformly among
// the kinds in Faults.Kinds that apply to the operation (drop-response applies
// only to create, rotate and delete; a request for which no listed kind
// applies gets no fault). Faults.Ops, when set, restricts faults to those
// operations (say, refresh only). See faults.go for what each kind does on
// the wire.
//
// IDs and secrets come from a PRNG seeded with Options.Seed (0 = a random
// seed), so a non-zero seed makes runs reproducible.
package sim
