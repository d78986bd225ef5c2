package v1alpha1

// Condition types. Ready, Reconciling and Stalled follow the kstatus
// conventions, so Flux, Argo CD and `kubectl wait` understand them.
const (
	// ConditionReady is True when the object is doing its job: for a
	// ServiceToken, the Secret holds a credential Cloudflare accepts; for an
	// account, its credentials Secret is readable and valid.
	ConditionReady = "Ready"
	// ConditionReconciling is True while the operator is working towards the
	// desired state (creating, rotating, retrying a transient failure).
	ConditionReconciling = "Reconciling"
	// ConditionStalled is True when the operator cannot make progress without
	// a change from a person (spec, credentials, a conflicting Secret).
	ConditionStalled = "Stalled"
)

// Condition reasons. Each one is documented in docs/troubleshooting.md.
const (
	ReasonReady              = "Ready"
	ReasonProgressing        = "Progressing"
	ReasonCreating           = "Creating"
	ReasonRotating           = "Rotating"
	ReasonRefreshing         = "Refreshing"
	ReasonUpdating           = "Updating"
	ReasonDeleting           = "Deleting"
	ReasonAccountNotFound    = "AccountNotFound"
	ReasonAccountNotReady    = "AccountNotReady"
	ReasonAccountNotAllowed  = "AccountNotAllowed"
	ReasonCredentialsInvalid = "CredentialsInvalid"
	ReasonCredentialsMissing = "CredentialsMissing"
	ReasonUnauthorized       = "Unauthorized"
	ReasonInvalidSpec        = "InvalidSpec"
	ReasonSecretConflict     = "SecretConflict"
	ReasonRateLimited        = "RateLimited"
	ReasonCloudflareError    = "CloudflareError"
	ReasonDeletionBlocked    = "DeletionBlocked"
	// ReasonSecretNotWritable: the Secret cannot be written (an admission
	// policy refuses it, it is immutable, RBAC); checked with a dry run
	// before a secret is issued, so nothing is minted that could be lost.
	ReasonSecretNotWritable = "SecretNotWritable"
	// ReasonRotationLost: a rotate's response was lost after Cloudflare
	// committed it, so recovering revoked the held secret early.
	ReasonRotationLost = "RotationLost"
	// ReasonAccountUnreachable: Cloudflare cannot route to the account or
	// zone with these credentials (codes 7003/7000): a wrong ID, or an API
	// token that does not cover it. Never taken as "the token is gone".
	ReasonAccountUnreachable = "AccountUnreachable"
	// ReasonCredentialsReadOnly: the API token may read service tokens but
	// not write them, found by a write probe before any real write.
	ReasonCredentialsReadOnly = "CredentialsReadOnly"
	// ReasonTokenNameConflict: another token in the account, one this
	// ServiceToken cannot prove it made, already has the spec.tokenName it
	// asks for; nothing is created or renamed, and that token is left alone.
	ReasonTokenNameConflict = "TokenNameConflict"
	// ReasonTokenNotOwned: status.tokenID names a token this ServiceToken
	// cannot prove it made (its name does not end with "#<uid>" and the
	// Secret does not hold its credential); it is not rotated, renewed,
	// updated or deleted.
	ReasonTokenNotOwned = "TokenNotOwned"
	// ReasonTokenIDChanged: not a condition reason but a Warning event's: the
	// ServiceToken's token has a new ID (a recreate, a zone token's
	// replacement), which Access policies naming the old one do not admit.
	ReasonTokenIDChanged = "TokenIDChanged"
	// ReasonChangedOutsideOperator: not a condition reason but a Warning
	// event's: the token was changed outside the operator (see
	// status.lastExternalChange).
	ReasonChangedOutsideOperator = "ChangedOutsideOperator"
	// ReasonCredentialsNotOptedIn: the credentials Secret lacks the label
	// LabelCredentials=true, so the operator does not read it as Cloudflare
	// credentials (nothing is sent anywhere).
	ReasonCredentialsNotOptedIn = "CredentialsNotOptedIn"
	// ReasonAPIURLNotAllowed: the account's API URL is not in the manager's
	// --allowed-api-urls (nothing is sent to it).
	ReasonAPIURLNotAllowed = "APIURLNotAllowed"
	// ReasonAccountChanged: the account object a ServiceToken refers to now
	// names another Cloudflare account than the one its token lives in
	// (status.accountID). Nothing is created or deleted in either account.
	ReasonAccountChanged = "AccountChanged"
	// ReasonAdoptionFailed: the token named by the adopt-token-id annotation
	// cannot be adopted (not in the referenced account, or made by another
	// ServiceToken); nothing was changed, and no token was created.
	ReasonAdoptionFailed = "AdoptionFailed"
)

// Annotations that request a one-off action on a ServiceToken. Any new value
// (a timestamp is customary) triggers the action once; the handled value is
// echoed into status.lastHandledRotateRequest / lastHandledRefreshRequest.
const (
	AnnotationRotateRequestedAt  = "access.servicetoken.dev/rotate-requested-at"
	AnnotationRefreshRequestedAt = "access.servicetoken.dev/refresh-requested-at"
	// AnnotationForceDelete releases a ServiceToken whose Cloudflare token can
	// no longer be deleted (account or credentials gone): set it to "true" and
	// the finalizer is removed without deleting the token in Cloudflare.
	AnnotationForceDelete = "access.servicetoken.dev/force-delete"
	// AnnotationAdoptTokenID hands an existing token (made by Terraform, the
	// dashboard, or a ServiceToken in another cluster) to a ServiceToken that
	// has none: the operator checks that the token is in the referenced
	// account and carries no other ServiceToken's marker, rotates it with the
	// grace period to obtain a secret (the old one keeps working until the
	// grace ends), and owns it from then on (status.adoptedTokenID). Acted on
	// once.
	AnnotationAdoptTokenID = "access.servicetoken.dev/adopt-token-id"
)

// LabelCredentials marks a Secret that may be used as the credentials of a
// CloudflareAccount or ClusterCloudflareAccount (value "true"). An account
// naming a Secret without it is not Ready (CredentialsNotOptedIn): whoever
// may create an account object cannot make the operator send an arbitrary
// Secret of the namespace to an API.
const LabelCredentials = "access.servicetoken.dev/credentials"

// Labels and annotations the operator puts on the Secrets it manages.
const (
	// LabelManaged marks a Secret as written by this operator. Only Secrets
	// with this label are cached, so unrelated Secrets cost no memory.
	LabelManaged = "access.servicetoken.dev/managed"
	// AnnotationTokenID and AnnotationExpiresAt tell consumers which token the
	// Secret holds and when it expires (RFC 3339, empty for "forever").
	AnnotationTokenID   = "access.servicetoken.dev/token-id"
	AnnotationExpiresAt = "access.servicetoken.dev/expires-at"
	// AnnotationOperationID is the ID of the issuance (status.pendingOperation.id)
	// that produced the credential in the Secret, written in the same write.
	AnnotationOperationID = "access.servicetoken.dev/operation-id"
)

// FieldManager is the operator's field manager for server-side apply: it owns
// only the Secret fields it writes, so keys, labels, annotations and
// finalizers that other tools add survive every write.
const FieldManager = "servicetoken-operator"

// Finalizer keeps a ServiceToken until its Cloudflare token is deleted (or orphaned).
const Finalizer = "access.servicetoken.dev/finalizer"

// AccountFinalizer keeps an account until no ServiceToken uses it, so their
// tokens can still be deleted in Cloudflare when a namespace is deleted with
// everything in it. It is the finalizer of an install without an install ID
// (--install-id); other installs use AccountFinalizerPrefix + their ID, so
// two installs sharing a ClusterCloudflareAccount each keep their own.
const AccountFinalizer = "access.servicetoken.dev/in-use"

// CredentialsFinalizer keeps an account's credentials Secret while
// ServiceTokens of the account hold Cloudflare tokens, which their deletion
// deletes with these credentials (status.protectedSecret of the account).
const CredentialsFinalizer = "access.servicetoken.dev/credentials-in-use"

// AccountFinalizerPrefix starts the account finalizer of an install with an ID.
const AccountFinalizerPrefix = AccountFinalizer + "."
