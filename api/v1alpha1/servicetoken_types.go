package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Defaults for ServiceToken fields, applied in code when a field is unset.
const (
	DurationForever          = "forever"
	DefaultDuration          = "8760h"
	DefaultGracePeriod       = "24h"
	DefaultClientIDKey       = "client_id"
	DefaultClientSecretKey   = "client_secret"
	KindCloudflareAccount    = "CloudflareAccount"
	KindClusterCloudflareAcc = "ClusterCloudflareAccount"
)

// RenewalAction is what the operator does when a token's expiry gets close.
// +kubebuilder:validation:Enum=Refresh;Rotate
type RenewalAction string

const (
	// RenewalRefresh extends the expiry; the secret stays the same.
	RenewalRefresh RenewalAction = "Refresh"
	// RenewalRotate issues a new secret (and a new expiry); the previous
	// secret keeps working for rotation.gracePeriod.
	RenewalRotate RenewalAction = "Rotate"
)

// DeletionPolicy says what happens to the Cloudflare token when the
// ServiceToken is deleted.
// +kubebuilder:validation:Enum=Delete;Orphan
type DeletionPolicy string

const (
	// DeletionDelete deletes the Cloudflare token (already gone is fine).
	DeletionDelete DeletionPolicy = "Delete"
	// DeletionOrphan leaves the Cloudflare token in place.
	DeletionOrphan DeletionPolicy = "Orphan"
)

// AccountReference names the account a ServiceToken's token lives in.
type AccountReference struct {
	// kind of the account: CloudflareAccount (default; same namespace as the
	// ServiceToken) or ClusterCloudflareAccount.
	// +optional
	// +kubebuilder:validation:Enum=CloudflareAccount;ClusterCloudflareAccount
	Kind string `json:"kind,omitempty"`

	// name of the account object.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// Renewal says when and how a token is renewed before it expires.
type Renewal struct {
	// before is how long before expiry the token is renewed: renewal happens
	// once expiresAt - now <= before. A Go duration shorter than
	// spec.duration. Default: one third of spec.duration. Ignored for
	// "forever" tokens, which never expire.
	// +optional
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="renewal.before must be greater than 0"
	Before string `json:"before,omitempty"`

	// action when the renewal time is reached: Refresh (default) extends the
	// expiry and keeps the secret; Rotate issues a new secret with a new
	// expiry and keeps the previous secret valid for rotation.gracePeriod.
	// +optional
	Action RenewalAction `json:"action,omitempty"`
}

// Rotation configures routine rotation of the client secret.
type Rotation struct {
	// every rotates the client secret on this schedule (counted from the last
	// rotation, or from creation), whatever the expiry. A Go duration of at
	// least 1m. Unset: the secret is rotated only by renewal.action Rotate,
	// on request, or to recover a lost secret.
	// +optional
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="rotation.every must be at least 1m"
	Every string `json:"every,omitempty"`

	// gracePeriod is how long the previous client secret keeps working after
	// any rotation, so workloads can pick up the new Secret. A Go duration;
	// "0s" revokes the previous secret at once. Default: 24h. Cloudflare keeps
	// at most one previous secret, so a rotation during a grace period ends
	// the older secret's grace early; with rotation.every set, the grace is
	// capped at every.
	// +optional
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	GracePeriod string `json:"gracePeriod,omitempty"`
}

// SecretKeys names the keys of the generated Secret.
// +kubebuilder:validation:XValidation:rule="(has(self.clientID) ? self.clientID : 'client_id') != (has(self.clientSecret) ? self.clientSecret : 'client_secret')",message="secret.keys.clientID and secret.keys.clientSecret must be different"
type SecretKeys struct {
	// clientID is the key for the client ID (sent as CF-Access-Client-Id).
	// Default: client_id.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	ClientID string `json:"clientID,omitempty"`

	// clientSecret is the key for the client secret (sent as
	// CF-Access-Client-Secret). Default: client_secret.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	ClientSecret string `json:"clientSecret,omitempty"`
}

// SecretTemplate describes the Secret the credentials are written to.
type SecretTemplate struct {
	// name of the Secret, in the ServiceToken's namespace. Default: the
	// ServiceToken's name. The Secret must not exist already unless this
	// operator manages it (otherwise Ready=False, reason SecretConflict, and
	// the Secret is left untouched). Changing the name moves the credential
	// to a new Secret and deletes the old one.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name,omitempty"`

	// keys names the Secret's data keys.
	// +optional
	Keys *SecretKeys `json:"keys,omitempty"`

	// labels are added to the Secret. The ServiceToken's own labels are
	// never copied (GitOps tools would prune the Secret as theirs).
	// +optional
	Labels map[string]string `json:"labels,omitempty"`

	// annotations are added to the Secret, for example
	// reloader.stakater.com/match: "true" to roll workloads on rotation
	// (Reloader acts on it for workloads annotated
	// reloader.stakater.com/search: "true").
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// ServiceTokenSpec is the desired Cloudflare Access service token.
// +kubebuilder:validation:XValidation:rule="!has(self.renewal) || !has(self.renewal.before) || (has(self.duration) && self.duration == 'forever') || duration(self.renewal.before) < duration(has(self.duration) ? self.duration : '8760h')",message="renewal.before must be shorter than duration"
// +kubebuilder:validation:XValidation:rule="!has(self.rotation) || !has(self.rotation.every) || !has(self.rotation.gracePeriod) || duration(self.rotation.gracePeriod) <= duration(self.rotation.every)",message="rotation.gracePeriod must not be longer than rotation.every"
// +kubebuilder:validation:XValidation:rule="has(self.zoneID) == has(oldSelf.zoneID)",message="zoneID is immutable: create a new ServiceToken to move a token between account and zone scope"
type ServiceTokenSpec struct {
	// accountRef names the CloudflareAccount (same namespace) or
	// ClusterCloudflareAccount whose credentials and account this token uses.
	// Immutable.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="accountRef is immutable: create a new ServiceToken to move a token to another account"
	AccountRef AccountReference `json:"accountRef"`

	// zoneID, when set, creates a zone-scoped token in this zone (32 hex
	// characters) instead of an account-scoped one. Cloudflare offers no
	// refresh or rotate for zone tokens: the operator refreshes by updating
	// the duration and rotates by creating a replacement token. Immutable.
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{32}$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="zoneID is immutable: create a new ServiceToken to move a token to another zone"
	ZoneID string `json:"zoneID,omitempty"`

	// tokenName is the token's name in Cloudflare. Default:
	// "<namespace>/<name>#<uid>" of this ServiceToken, or
	// "<namespace>/<name>@<cluster>#<uid>" when the operator runs with
	// --cluster-name (uid: metadata.uid), so the name is this object's alone.
	// A token is always created under a name ending with "#<uid>"; an
	// explicit tokenName is set by a rename once the secret is stored. If
	// another token in the account already has this name, nothing is created
	// or renamed (Ready=False, reason TokenNameConflict). Changing it renames
	// the token in place; the secret stays valid.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=255
	TokenName string `json:"tokenName,omitempty"`

	// duration is how long the token is valid after creation or renewal: a Go
	// duration of at least 1m (units ns, us, ms, s, m, h, e.g. "720h") or
	// "forever" (never expires, never renewed on expiry). Default: 8760h (one
	// year). Changing it updates the token in place and resets its expiry to
	// now + duration; the secret stays valid.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^(forever|([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+)$`
	// +kubebuilder:validation:XValidation:rule="self == 'forever' || duration(self) >= duration('1m')",message="duration must be at least 1m, or forever"
	Duration string `json:"duration,omitempty"`

	// enabled: a disabled token keeps its identity and Secret, but neither its
	// current nor its previous secret authenticates. Default: true. Changing
	// it updates the token in place.
	// +optional
	Enabled *bool `json:"enabled,omitempty"`

	// renewal says when and how the token is renewed as expiry gets close.
	// +optional
	Renewal *Renewal `json:"renewal,omitempty"`

	// rotation configures routine rotation of the client secret and the grace
	// period of the previous secret after any rotation.
	// +optional
	Rotation *Rotation `json:"rotation,omitempty"`

	// secret describes the Secret the client ID and secret are written to.
	// +optional
	Secret *SecretTemplate `json:"secret,omitempty"`

	// deletionPolicy: Delete (default) deletes the Cloudflare token when this
	// object is deleted; Orphan leaves it in Cloudflare.
	// +optional
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`
}

// OperationType names a Cloudflare write whose outcome must survive a crash.
// +kubebuilder:validation:Enum=Create;Rotate;Replace
type OperationType string

const (
	// OperationCreate: a token is being created under status.pendingOperation.tokenName.
	OperationCreate OperationType = "Create"
	// OperationRotate: the token's secret is being rotated.
	OperationRotate OperationType = "Rotate"
	// OperationReplace: a zone token is being replaced by a new one.
	OperationReplace OperationType = "Replace"
)

// PendingOperation is the issuance journal's entry for a Cloudflare call that
// returns a secret (create, rotate, zone replacement). It is recorded before
// the call; the credential the call returns is written into the Secret
// together with the operation's ID (annotation
// access.servicetoken.dev/operation-id). After a crash, a cancelled call or a
// lost response, the operator settles the operation by comparing IDs, never
// clocks: the Secret carries this ID, so the secret was stored; it does not,
// so the secret was lost or never issued.
type PendingOperation struct {
	// id identifies this operation (random, unique per issuance).
	// +optional
	// +kubebuilder:validation:MaxLength=64
	ID string `json:"id,omitempty"`
	// type of the operation.
	Type OperationType `json:"type"`
	// tokenName the token is (being) created with: always ending with
	// "#<uid>", so a token whose response was lost is recognised as this
	// object's by its name alone.
	// +optional
	TokenName string `json:"tokenName,omitempty"`
	// tokenID of the token being rotated or replaced.
	// +optional
	TokenID string `json:"tokenID,omitempty"`
	// tokenUpdatedAt is the rotated token's updated_at (RFC 3339, as
	// Cloudflare reported it) before the call. A rotate moves it, so an
	// unchanged value after a lost response proves the rotate never happened.
	// +optional
	TokenUpdatedAt string `json:"tokenUpdatedAt,omitempty"`
	// previousSecretExpiresAt is when the secret workloads hold now stops
	// working once this operation succeeds (unset: at once, as for a create
	// or a grace period of 0s). Recorded with the intent so the grace period
	// survives a lost status write.
	// +optional
	PreviousSecretExpiresAt *metav1.Time `json:"previousSecretExpiresAt,omitempty"`
	// rotateRequest is the access.servicetoken.dev/rotate-requested-at
	// value this operation answers, echoed into
	// status.lastHandledRotateRequest when it is settled after a lost status
	// write (so one request never rotates twice).
	// +optional
	RotateRequest string `json:"rotateRequest,omitempty"`
	// startedAt is when the operation was recorded.
	StartedAt metav1.Time `json:"startedAt"`
}

// ServiceTokenStatus is the observed state of a ServiceToken. It never holds a secret.
type ServiceTokenStatus struct {
	// conditions: Ready (the Secret holds a credential Cloudflare accepts),
	// Reconciling (work in progress) and Stalled (needs a person), as kstatus
	// expects.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation of the spec last acted on.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// tokenID is the Cloudflare service token's ID.
	// +optional
	TokenID string `json:"tokenID,omitempty"`
	// accountID is the Cloudflare account the token lives in (32 hex
	// characters), recorded before the operator first creates the token and
	// whenever it finds the token in its account. If the account object
	// behind spec.accountRef later names another Cloudflare account (it was
	// deleted and recreated with another spec.accountID), the operator
	// neither creates a token there nor deletes anything: the ServiceToken is
	// Ready=False, reason AccountChanged, until the account object names this
	// account again.
	// +optional
	AccountID string `json:"accountID,omitempty"`
	// clientID is the token's client ID (sent as CF-Access-Client-Id; not a secret).
	// +optional
	ClientID string `json:"clientID,omitempty"`
	// ownershipProof proves that the operator made (or adopted) the token
	// in tokenID for this object: an HMAC of the object's UID and the token
	// ID keyed with the account's credentials. Status alone proves nothing
	// (whoever may write it could name another tenant's token); this proof
	// can be made only with the credentials. It lets the operator recognise
	// a token under an explicit spec.tokenName after its Secret is lost.
	// +optional
	OwnershipProof string `json:"ownershipProof,omitempty"`
	// tokenName is the token's name in Cloudflare.
	// +optional
	TokenName string `json:"tokenName,omitempty"`
	// expiresAt is when the token expires, as Cloudflare reports it. Unset
	// for a "forever" token.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`
	// renewalTime is when the operator next refreshes or rotates the token.
	// +optional
	RenewalTime *metav1.Time `json:"renewalTime,omitempty"`
	// lastRefreshTime is when the token's expiry was last extended.
	// +optional
	LastRefreshTime *metav1.Time `json:"lastRefreshTime,omitempty"`
	// lastRotationTime is when the client secret was last issued (creation or rotation).
	// +optional
	LastRotationTime *metav1.Time `json:"lastRotationTime,omitempty"`
	// previousSecretExpiresAt is when the previous client secret stops
	// working after a rotation.
	// +optional
	PreviousSecretExpiresAt *metav1.Time `json:"previousSecretExpiresAt,omitempty"`
	// previousTokenID is a replaced zone token that is deleted once
	// previousSecretExpiresAt has passed.
	// +optional
	PreviousTokenID string `json:"previousTokenID,omitempty"`
	// previousOwnershipProof is ownershipProof for previousTokenID, kept
	// from before the replacement, so the replaced token can be proven this
	// object's, and deleted, when its grace period ends.
	// +optional
	PreviousOwnershipProof string `json:"previousOwnershipProof,omitempty"`
	// secretName is the Secret holding the credential.
	// +optional
	SecretName string `json:"secretName,omitempty"`
	// failedAttempts counts consecutive failed reconciles; the retry backoff
	// grows with it and survives a restart. Reset by success or a spec change.
	// +optional
	FailedAttempts int32 `json:"failedAttempts,omitempty"`
	// lastFailureTime is when the last failure happened.
	// +optional
	LastFailureTime *metav1.Time `json:"lastFailureTime,omitempty"`
	// lastHandledRotateRequest echoes the value of the
	// access.servicetoken.dev/rotate-requested-at annotation last acted on.
	// +optional
	LastHandledRotateRequest string `json:"lastHandledRotateRequest,omitempty"`
	// lastHandledRefreshRequest echoes the value of the
	// access.servicetoken.dev/refresh-requested-at annotation last acted on.
	// +optional
	LastHandledRefreshRequest string `json:"lastHandledRefreshRequest,omitempty"`
	// pendingOperation is set just before a Cloudflare call that returns a
	// secret and cleared once the secret is stored.
	// +optional
	PendingOperation *PendingOperation `json:"pendingOperation,omitempty"`
	// renewalRotation is the ID of the rotation made for the renewal in
	// progress (renewal.action Rotate: rotate, then refresh). It is cleared by
	// the refresh that ends the renewal, so a retry after "rotated, refresh
	// failed" only refreshes instead of rotating again.
	// +optional
	RenewalRotation string `json:"renewalRotation,omitempty"`
	// lastRotationLostTime is when the operator last had to revoke the secret
	// workloads held before its grace period ended: a rotate whose response
	// was lost (Cloudflare committed it, the new secret never arrived) leaves
	// Cloudflare's single "previous" slot to the lost secret, so the recovery
	// rotation revokes the held one. See docs/renewal.md.
	// +optional
	LastRotationLostTime *metav1.Time `json:"lastRotationLostTime,omitempty"`
	// tokenUpdatedAt is the token's updated_at as Cloudflare last reported it
	// after a change the operator made or saw. A later updated_at that the
	// operator did not cause means someone changed the token outside it (see
	// lastExternalChange). Unset until Cloudflare reports one.
	// +optional
	TokenUpdatedAt *metav1.MicroTime `json:"tokenUpdatedAt,omitempty"`
	// lastExternalChange is the last change to the token made outside the
	// operator (the dashboard, Terraform, a script, Cloudflare's cleanup of
	// inactive tokens), and what the operator did about it.
	// +optional
	LastExternalChange *ExternalChange `json:"lastExternalChange,omitempty"`
	// adoptedTokenID is the token handed over with the
	// access.servicetoken.dev/adopt-token-id annotation, once adopted: the
	// annotation is acted on once, and may be removed afterwards.
	// +optional
	AdoptedTokenID string `json:"adoptedTokenID,omitempty"`
}

// ExternalChange is a change to a ServiceToken's token that the operator did
// not make.
type ExternalChange struct {
	// kind is what changed: Rotated (updated_at moved and nothing readable
	// changed: Cloudflare shows no other sign of a rotation), Modified (name,
	// duration, enabled or expiry changed), Disabled, or Deleted (by someone,
	// or by Cloudflare's cleanup of inactive tokens).
	// +kubebuilder:validation:Enum=Rotated;Modified;Disabled;Deleted
	Kind string `json:"kind"`
	// observedTime is when the operator noticed it.
	ObservedTime metav1.Time `json:"observedTime"`
	// message says what changed and what the operator did about it.
	// +optional
	Message string `json:"message,omitempty"`
}

// Kinds of ExternalChange.
const (
	ExternalRotated  = "Rotated"
	ExternalModified = "Modified"
	ExternalDisabled = "Disabled"
	ExternalDeleted  = "Deleted"
)

// The Expires and Renews columns are strings (RFC 3339): kubectl prints a
// future time of type date as "<invalid>", as it only shows how long ago
// something happened. Rotated, a past time, is a date ("3d").

// ServiceToken is a Cloudflare Access service token whose client ID and
// secret the operator keeps in a Secret, renewing and rotating it on schedule.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=cfst,categories=cloudflare
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Token",type=string,JSONPath=`.status.tokenID`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.expiresAt`
// +kubebuilder:printcolumn:name="Secret",type=string,JSONPath=`.status.secretName`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Renews",type=string,JSONPath=`.status.renewalTime`,priority=1
// +kubebuilder:printcolumn:name="Rotated",type=date,JSONPath=`.status.lastRotationTime`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ServiceToken struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec ServiceTokenSpec `json:"spec"`
	// +optional
	Status ServiceTokenStatus `json:"status,omitempty"`
}

// ServiceTokenList is a list of ServiceToken.
// +kubebuilder:object:root=true
type ServiceTokenList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ServiceToken `json:"items"`
}
