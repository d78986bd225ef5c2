package controller

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	cf "github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare"
)

// An account's status speaks kstatus, which Flux and Argo CD read to decide
// whether a sync has converged, is still converging, or has failed:
//
//   - Stalled=True only for what a person must fix: the spec (an API URL the
//     operator does not allow), the credentials Secret (no such key, not
//     opted in) or the API token (rejected, read-only, no access to the
//     account). Waiting cannot help, so the sync should fail.
//   - Reconciling=True for what may converge with nobody acting: Cloudflare
//     unavailable or rate limiting, a credentials Secret that does not
//     exist yet (created later in the same sync, or by a secrets operator).
//     Ready is False meanwhile, unless the account was already Ready: a
//     failed recheck of credentials that worked keeps the account Ready
//     (its ServiceTokens keep working) and is retried with backoff.
//
// A Secret that exists without the opt-in label is Stalled: the label comes
// with the Secret's manifest, so a Secret without it will not gain it by
// waiting. The credentials Secret is watched, so adding the label, creating
// the Secret or rotating the API token is picked up at once either way.

// accountOutcome is what one check of an account concluded.
type accountOutcome int

const (
	accountReady accountOutcome = iota
	accountReconciling
	accountStalled
	// accountKeep: a transient failure of an account already Ready; keep
	// the status as it is and retry.
	accountKeep
)

// accountVerdict is an outcome with the reason and message to record and
// when to check again (0: the regular recheck).
type accountVerdict struct {
	Outcome         accountOutcome
	Reason, Message string
	RequeueAfter    time.Duration
}

// unreachableConfirmAfter is how soon a first "cannot route to the account"
// (Cloudflare code 7003) is checked again before it counts as the user's to
// fix: Cloudflare answers so for a while after an API token is given access
// to an account.
const unreachableConfirmAfter = 10 * time.Second

// classifyAccount is the one place a check's error (nil: the credentials
// work) becomes an outcome. prev is the account's current Ready condition.
func classifyAccount(acc *account, err error, prev *metav1.Condition) accountVerdict {
	if err == nil {
		return accountVerdict{Outcome: accountReady, Reason: v1alpha1.ReasonReady, Message: "credentials accepted by Cloudflare"}
	}
	if ce, ok := asCause(err); ok {
		if ce.Terminal {
			return accountVerdict{Outcome: accountStalled, Reason: ce.Reason, Message: ce.Message}
		}
		return accountVerdict{Outcome: accountReconciling, Reason: ce.Reason, Message: ce.Message}
	}
	wasReady := prev != nil && prev.Status == metav1.ConditionTrue
	switch cf.KindOf(err) {
	case cf.KindAuth:
		return accountVerdict{Outcome: accountStalled, Reason: v1alpha1.ReasonCredentialsInvalid,
			Message: "Cloudflare rejected the credentials (need permission Access: Service Tokens Write): " + err.Error()}
	case cf.KindNotFound, cf.KindInvalid:
		return accountVerdict{Outcome: accountStalled, Reason: v1alpha1.ReasonCredentialsInvalid,
			Message: "Cloudflare rejected the account: " + err.Error()}
	case cf.KindUnreachable:
		v := accountVerdict{Outcome: accountStalled, Reason: v1alpha1.ReasonAccountUnreachable, Message: fmt.Sprintf(
			"Cloudflare cannot route to account %q with these credentials: check spec.accountID and that the API token includes this account: %v",
			acc.Settings.AccountID, err)}
		if prev == nil || prev.Reason != v1alpha1.ReasonAccountUnreachable {
			v.Outcome, v.RequeueAfter = accountReconciling, unreachableConfirmAfter
			v.Message += fmt.Sprintf(" (checking again in %s before giving up)", unreachableConfirmAfter)
		}
		return v
	case cf.KindRateLimited:
		if wasReady {
			return accountVerdict{Outcome: accountKeep, RequeueAfter: cf.RetryAfterOf(err)}
		}
		return accountVerdict{Outcome: accountReconciling, Reason: v1alpha1.ReasonRateLimited,
			Message: "Cloudflare rate limits these credentials; checking again shortly", RequeueAfter: cf.RetryAfterOf(err)}
	default: // 5xx, timeouts, connection errors, the API server
		if wasReady {
			return accountVerdict{Outcome: accountKeep}
		}
		return accountVerdict{Outcome: accountReconciling, Reason: v1alpha1.ReasonCloudflareError,
			Message: "cannot reach the Cloudflare API: " + err.Error(), RequeueAfter: 10 * time.Second}
	}
}

// setAccountConditions records a verdict (not accountKeep) as the kstatus
// conditions Ready, Reconciling and Stalled.
func setAccountConditions(conds *[]metav1.Condition, gen int64, v accountVerdict) {
	set := func(t string, status metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(conds, metav1.Condition{Type: t, Status: status, Reason: reason, Message: msg, ObservedGeneration: gen})
	}
	switch v.Outcome {
	case accountReady:
		set(v1alpha1.ConditionReady, metav1.ConditionTrue, v.Reason, v.Message)
		set(v1alpha1.ConditionReconciling, metav1.ConditionFalse, v1alpha1.ReasonReady, "")
		set(v1alpha1.ConditionStalled, metav1.ConditionFalse, v1alpha1.ReasonReady, "")
	case accountReconciling:
		set(v1alpha1.ConditionReady, metav1.ConditionFalse, v.Reason, v.Message)
		set(v1alpha1.ConditionReconciling, metav1.ConditionTrue, v.Reason, v.Message)
		set(v1alpha1.ConditionStalled, metav1.ConditionFalse, v.Reason, "")
	case accountStalled:
		set(v1alpha1.ConditionReady, metav1.ConditionFalse, v.Reason, v.Message)
		set(v1alpha1.ConditionReconciling, metav1.ConditionFalse, v.Reason, "")
		set(v1alpha1.ConditionStalled, metav1.ConditionTrue, v.Reason, v.Message)
	}
}
