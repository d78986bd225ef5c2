package controller

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	cf "github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare"
)

// The status a user reads is computed here, once per reconcile, from the
// facts the phases recorded in the scope and the reconcile's outcome.

// setConditions is the one place the kstatus conditions are computed.
func setConditions(s *scope, out outcome) {
	st := s.st
	gen := st.Generation
	healthy := s.token != nil && s.secretOK && !expired(s.token, s.now)
	set := func(t string, status metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&st.Status.Conditions, metav1.Condition{Type: t, Status: status, Reason: reason, Message: msg, ObservedGeneration: gen})
	}
	if !st.DeletionTimestamp.IsZero() {
		reason := v1alpha1.ReasonDeleting
		if out.kind != outcomeOK && st.Status.FailedAttempts >= s.deleteLimit {
			reason = v1alpha1.ReasonDeletionBlocked
		}
		set(v1alpha1.ConditionReady, metav1.ConditionFalse, reason, deletingMessage(s, out))
		set(v1alpha1.ConditionReconciling, metav1.ConditionTrue, reason, deletingMessage(s, out))
		set(v1alpha1.ConditionStalled, metav1.ConditionFalse, v1alpha1.ReasonDeleting, "")
		return
	}
	switch {
	case out.kind == outcomeTerminal:
		set(v1alpha1.ConditionReady, metav1.ConditionFalse, out.reason, out.message)
		set(v1alpha1.ConditionStalled, metav1.ConditionTrue, out.reason, out.message)
		set(v1alpha1.ConditionReconciling, metav1.ConditionFalse, out.reason, "")
		return
	case out.kind == outcomeOK && healthy:
		msg := fmt.Sprintf("Secret %s holds a working credential for token %s", st.Status.SecretName, s.token.ID)
		if !s.eff.Enabled {
			msg += " (token disabled by spec.enabled)"
		}
		if s.note != "" { // waiting on a schedule is not work in progress (GitOps syncs would hang)
			msg += "; " + s.note
		}
		set(v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonReady, msg)
		set(v1alpha1.ConditionReconciling, metav1.ConditionFalse, v1alpha1.ReasonReady, "")
	default:
		reason, msg := out.reason, out.message
		if out.kind == outcomeOK {
			reason, msg = s.progressReason(), "work in progress"
		}
		readyStatus := metav1.ConditionFalse
		if healthy { // still a working credential while we wait or retry
			readyStatus, msg = metav1.ConditionTrue, "credential works; "+msg
		}
		set(v1alpha1.ConditionReady, readyStatus, reason, msg)
		set(v1alpha1.ConditionReconciling, metav1.ConditionTrue, reason, msg)
	}
	set(v1alpha1.ConditionStalled, metav1.ConditionFalse, v1alpha1.ReasonReady, "")
}

func (s *scope) progressReason() string {
	if s.progress != "" {
		return s.progress
	}
	return v1alpha1.ReasonProgressing
}

func deletingMessage(s *scope, out outcome) string {
	if out.kind == outcomeOK {
		return "deleting the Cloudflare token"
	}
	msg := out.message
	if s.st.Status.FailedAttempts >= s.deleteLimit {
		msg += fmt.Sprintf("; to release this object without deleting the Cloudflare token, set the annotation %s=true",
			v1alpha1.AnnotationForceDelete)
	}
	return msg
}

func expired(t *cf.Token, now time.Time) bool {
	return !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt)
}
