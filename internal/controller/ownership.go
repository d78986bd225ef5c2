package controller

import (
	"context"
	"crypto/hmac"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	v1alpha1 "github.com/servicetoken-operator/servicetoken-operator/api/v1alpha1"
	cf "github.com/servicetoken-operator/servicetoken-operator/internal/cloudflare"
)

// Which tokens are this ServiceToken's, decided in one place. Several
// clusters, Terraform and people share one Cloudflare account, and any of
// them can give a token any name, so a name alone ("<namespace>/<name>") is
// no proof. Status is no proof either: whoever may write servicetokens/status
// could point status.tokenID at another tenant's token. Every destructive or
// secret-issuing action on an existing token (rotate, refresh, update,
// delete, adopting a token a lost response left) first asks owns.

// owns reports whether t is provably this ServiceToken's token:
//   - its name ends with "#<this object's uid>" (v1alpha1.OwnerMarker): every
//     token the operator creates carries it, and a default name keeps it; or
//   - the Secret this ServiceToken controls holds a credential for it (same
//     token ID and client ID, written by the operator and unchanged since:
//     s.held), as it does for a token renamed to an explicit spec.tokenName,
//     or created before names carried the marker.
func (s *scope) owns(t cf.Token) bool {
	return s.marked(t) || s.holds(t) || s.vouched(t)
}

// vouched reports whether status.ownershipProof proves t this object's: a
// proof only the account's credentials can make, for this UID and t's ID.
func (s *scope) vouched(t cf.Token) bool {
	proof, st := "", s.st.Status
	switch t.ID {
	case "":
	case st.TokenID:
		proof = st.OwnershipProof
	case st.PreviousTokenID:
		proof = st.PreviousOwnershipProof
	}
	return proof != "" && s.acct != nil && s.acct.Client != nil &&
		hmac.Equal([]byte(proof), []byte(s.acct.Client.Vouch(string(s.st.UID), t.ID)))
}

// vouchToken is the phase that keeps status.ownershipProof current.
func (r *ServiceTokenReconciler) vouchToken(_ context.Context, s *scope) error {
	s.vouch()
	return nil
}

// vouch records the proof that status.tokenID is this object's, once the
// token is proven by its marker or the Secret, so it stays provable when
// both are gone: an explicit spec.tokenName has no marker, and a Secret can
// be deleted.
func (s *scope) vouch() {
	t := s.token
	if t == nil || t.ID != s.st.Status.TokenID || !s.owns(*t) {
		return
	}
	s.st.Status.OwnershipProof = s.acct.Client.Vouch(string(s.st.UID), t.ID)
}

// marked reports whether t's name ends with this object's OwnerMarker.
func (s *scope) marked(t cf.Token) bool {
	return s.st.UID != "" && t.Knows(cf.FieldName) && strings.HasSuffix(t.Name, v1alpha1.OwnerMarker(s.st.UID))
}

// holds reports whether the Secret this ServiceToken controls holds a
// credential of t (s.held is read only from a Secret controlled by it).
func (s *scope) holds(t cf.Token) bool {
	return s.heldOK && t.ID != "" && s.held.TokenID == t.ID && t.ClientID != "" && s.held.ClientID == t.ClientID
}

// markedName is the name this object's tokens are created with.
func (s *scope) markedName() string {
	return v1alpha1.MarkedTokenName(s.eff.TokenName, s.st.UID)
}

// nameTaken returns a token in the account, other than this object's, that
// already has the explicit spec.tokenName: creating or renaming a token to
// that name would make two tokens nobody can tell apart. A default name
// carries the UID and cannot be taken. The replaced zone token of status is
// not counted: it had the name first, and it is going away.
func (s *scope) nameTaken() (cf.Token, bool) {
	if s.st.Spec.TokenName == "" {
		return cf.Token{}, false
	}
	for _, t := range s.view.ByName(s.eff.TokenName) {
		if (s.token != nil && t.ID == s.token.ID) || t.ID == s.st.Status.PreviousTokenID || s.owns(t) {
			continue
		}
		return t, true
	}
	return cf.Token{}, false
}

// nameConflict is the TokenNameConflict outcome for the token other that
// holds the name.
func (s *scope) nameConflict(other cf.Token) error {
	keeps := ""
	if s.token != nil {
		keeps = s.token.Name
	}
	return s.nameConflictKeeping(other, keeps)
}

// nameConflictKeeping is nameConflict for a token that goes by keeps meanwhile.
func (s *scope) nameConflictKeeping(other cf.Token, keeps string) error {
	msg := fmt.Sprintf("token name %q is already used by Cloudflare token %s, which this ServiceToken did not create "+
		"(its name does not end with %q and the Secret does not hold its credential); it was left untouched",
		s.eff.TokenName, other.ID, v1alpha1.OwnerMarker(s.st.UID))
	if s.token != nil {
		msg += fmt.Sprintf(", and token %s goes by %q until the conflict is gone", s.token.ID, keeps)
	} else {
		msg += ", and no token was created"
	}
	return terminal(v1alpha1.ReasonTokenNameConflict, "%s. Rename or delete that token in Cloudflare if it is not in use, "+
		"or choose another spec.tokenName (or remove it: the default name carries this object's UID)", msg)
}

// notOwned is the TokenNotOwned outcome for status.tokenID naming token t.
func (s *scope) notOwned(t cf.Token) error {
	return terminal(v1alpha1.ReasonTokenNotOwned,
		"status.tokenID names Cloudflare token %s (%q), which this ServiceToken cannot prove it made: its name does not end with %q "+
			"and Secret %s does not hold its credential (nor does status.ownershipProof match). It is not rotated, renewed, updated or deleted. If it is this object's token, "+
			"rename it in Cloudflare to end with %q; otherwise clear status.tokenID and a new token is created",
		t.ID, t.Name, v1alpha1.OwnerMarker(s.st.UID), s.eff.SecretName, v1alpha1.OwnerMarker(s.st.UID))
}

// deleteIfOwned deletes the token with that ID when this object provably
// owns it. A token it cannot prove is left in Cloudflare, with a Warning
// event saying so: deleting another owner's token breaks whatever uses it,
// leaving one of ours costs a token. Gone already is fine. The token's
// current state comes from the view, or a GET when the view lacks it.
func (r *ServiceTokenReconciler) deleteIfOwned(ctx context.Context, s *scope, id, what string) error {
	t, ok := s.view.Get(id)
	if !ok {
		got, err := s.acct.Client.Get(ctx, s.acct.Scope, id)
		if cf.IsNotFound(err) {
			r.Inventory.Remove(s.acct.Shared, s.acct.Scope, id)
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading token %s before deleting it: %w", id, err)
		}
		t = got
	}
	if !s.owns(t) {
		r.event(s, corev1.EventTypeWarning, v1alpha1.ReasonTokenNotOwned, "Delete",
			"%s %s (%q) was left in Cloudflare: this ServiceToken cannot prove it made it (its name does not end with %q and "+
				"the Secret does not hold its credential); delete it in Cloudflare if it is not in use",
			what, id, t.Name, v1alpha1.OwnerMarker(s.st.UID))
		return nil
	}
	return r.deleteToken(ctx, s, id)
}
