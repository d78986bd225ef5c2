package sim

import "time"

// RefreshMode is how refresh moves a token's expires_at. Cloudflare's docs
// say refresh extends the lifetime by one year; whether the year counts
// from now or from the old expiry is unknown, and the duration modes play
// the guess that it follows the token's own duration.
type RefreshMode string

const (
	// RefreshYearFromExpiry sets the old expires_at + 8760h, or now + 8760h
	// if the token has already expired or has no expiry. It is the default:
	// the zero value "" means it too.
	RefreshYearFromExpiry RefreshMode = "year-from-expiry"
	// RefreshYearFromNow sets now + 8760h.
	RefreshYearFromNow RefreshMode = "year-from-now"
	// RefreshDurationFromExpiry sets the old expires_at + the token's
	// duration, or now + duration if it has already expired.
	RefreshDurationFromExpiry RefreshMode = "duration-from-expiry"
	// RefreshDurationFromNow sets now + the token's duration.
	RefreshDurationFromNow RefreshMode = "duration-from-now"
)

// refreshYear is the documented extension: "by one year".
const refreshYear = 8760 * time.Hour

// RefreshModes returns every mode, the default first.
func RefreshModes() []RefreshMode {
	return []RefreshMode{RefreshYearFromExpiry, RefreshYearFromNow, RefreshDurationFromExpiry, RefreshDurationFromNow}
}

func (m RefreshMode) orDefault() RefreshMode {
	if m == "" {
		return RefreshYearFromExpiry
	}
	return m
}

// expiry is the expires_at a refresh at now gives t. A "forever" token keeps
// having none, in every mode.
func (m RefreshMode) expiry(t TokenState, now time.Time) time.Time {
	d, forever, err := parseDuration(t.Duration)
	if forever {
		return t.ExpiresAt
	}
	m = m.orDefault()
	extension := refreshYear
	if m == RefreshDurationFromExpiry || m == RefreshDurationFromNow {
		if err != nil {
			return t.ExpiresAt // a duration set out of band that means nothing
		}
		extension = d
	}
	from := now
	if (m == RefreshYearFromExpiry || m == RefreshDurationFromExpiry) && !t.ExpiresAt.IsZero() && !t.Expired(now) {
		from = t.ExpiresAt
	}
	return from.Add(extension)
}
