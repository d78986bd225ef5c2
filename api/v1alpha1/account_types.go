package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Defaults for account fields, applied in code when a field is unset.
const (
	DefaultAPIURL            = "https://api.cloudflare.com/client/v4"
	DefaultAPITokenKey       = "apiToken"
	DefaultRateLimitRequests = 1000
	DefaultRateLimitPeriod   = "5m"
)

// AccountSettings are the fields both account kinds share.
type AccountSettings struct {
	// accountID is the Cloudflare account ID (32 lowercase hex characters) in
	// which account-scoped service tokens are created. Zone-scoped tokens use
	// the ServiceToken's spec.zoneID instead, with these credentials.
	// Immutable: an account object stands for one Cloudflare account, so
	// tokens already made through it are never looked for (or recreated) in
	// another. To use another Cloudflare account, create another account
	// object and new ServiceTokens that refer to it.
	// +required
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{32}$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="accountID is immutable: create another account object for another Cloudflare account (ServiceTokens keep their tokens in the account they were made in)"
	AccountID string `json:"accountID"`

	// apiURL overrides the Cloudflare API base URL, for an egress proxy or a
	// simulator. Default: https://api.cloudflare.com/client/v4 (or the
	// manager's --default-api-url). It must start with one of the prefixes
	// the operator's admin allows (manager flag --allowed-api-urls, chart
	// value allowedAPIURLs; default https://api.cloudflare.com/): any other
	// URL makes the account Ready=False, reason APIURLNotAllowed, and nothing
	// is sent to it. Changing it rebuilds the API client.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https?://[^\s]+$`
	APIURL string `json:"apiURL,omitempty"`

	// rateLimit is the client-side budget of Cloudflare API calls that every
	// ServiceToken using this account shares. Cloudflare allows 1200 calls per
	// 5 minutes per user and locks the user out for 5 minutes when it is
	// exceeded; the default (1000 per 5m) keeps headroom for other tools using
	// the same user.
	// +optional
	RateLimit *RateLimit `json:"rateLimit,omitempty"`
}

// RateLimit is a number of requests per period.
type RateLimit struct {
	// requests is how many Cloudflare API calls may be made per period.
	// Default: 1000.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	Requests *int32 `json:"requests,omitempty"`

	// period is the window the requests are spread over, a Go duration
	// (for example "5m", "10s"). Default: 5m.
	// +optional
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s')",message="rateLimit.period must be at least 1s"
	Period string `json:"period,omitempty"`
}

// CredentialsKeys names the keys of the credentials Secret. Use either
// apiTokenKey (an API token, sent as a Bearer token; recommended) or the
// legacy pair apiKeyKey + emailKey (a Global API Key).
// +kubebuilder:validation:XValidation:rule="has(self.apiKeyKey) == has(self.emailKey)",message="apiKeyKey and emailKey must be set together (legacy API key scheme)"
// +kubebuilder:validation:XValidation:rule="!(has(self.apiTokenKey) && has(self.apiKeyKey))",message="set either apiTokenKey or apiKeyKey + emailKey, not both"
type CredentialsKeys struct {
	// apiTokenKey is the key holding a Cloudflare API token with the
	// permission "Access: Service Tokens Write". Default: apiToken (used
	// when the legacy keys are not set).
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	APITokenKey string `json:"apiTokenKey,omitempty"`

	// apiKeyKey is the key holding a legacy Global API Key. Requires emailKey.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	APIKeyKey string `json:"apiKeyKey,omitempty"`

	// emailKey is the key holding the e-mail address of the user that owns
	// the legacy Global API Key. Requires apiKeyKey.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	EmailKey string `json:"emailKey,omitempty"`
}

// CredentialsReference points at a Secret in the account's own namespace.
type CredentialsReference struct {
	// name of the Secret, in the same namespace as the CloudflareAccount.
	// The Secret must carry the label access.servicetoken.dev/credentials:
	// "true" (its owner's consent to its use as Cloudflare credentials);
	// without it the account is Ready=False, reason CredentialsNotOptedIn,
	// and nothing is sent to Cloudflare. Changing the Secret's content
	// rebuilds the API client.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`

	CredentialsKeys `json:",inline"`
}

// ClusterCredentialsReference points at a Secret in a named namespace.
type ClusterCredentialsReference struct {
	// name of the Secret. It must carry the label
	// access.servicetoken.dev/credentials: "true"; without it the account is
	// Ready=False, reason CredentialsNotOptedIn, and nothing is sent.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`

	// namespace of the Secret. Required: a cluster-scoped object has no
	// namespace of its own. Keep it in the operator's namespace so only
	// cluster admins can read it.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespace string `json:"namespace"`

	CredentialsKeys `json:",inline"`
}

// CloudflareAccountSpec says where tokens live and how to authenticate.
type CloudflareAccountSpec struct {
	AccountSettings `json:",inline"`

	// credentialsRef points at the Secret, in this object's namespace, that
	// holds the Cloudflare API credentials. Only ServiceTokens in the same
	// namespace can use a CloudflareAccount.
	// +required
	CredentialsRef CredentialsReference `json:"credentialsRef"`
}

// ClusterCloudflareAccountSpec is a CloudflareAccountSpec that ServiceTokens
// in any allowed namespace can use.
type ClusterCloudflareAccountSpec struct {
	AccountSettings `json:",inline"`

	// credentialsRef points at the Secret that holds the Cloudflare API
	// credentials; its namespace is required.
	// +required
	CredentialsRef ClusterCredentialsReference `json:"credentialsRef"`

	// namespaceSelector limits which namespaces' ServiceTokens may use this
	// account. Empty or unset: every namespace. A ServiceToken in a namespace
	// that does not match gets Ready=False, reason AccountNotAllowed.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
}

// AccountStatus is the observed state of an account.
type AccountStatus struct {
	// conditions: Ready is True when the credentials Secret is readable, has
	// the keys the spec names, and Cloudflare accepted the credentials.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation of the spec last acted on.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// writeAccessVerified names the version of the credentials Secret
	// ("<uid>/<resourceVersion>") whose credentials passed the write probe:
	// a refresh of a token ID that cannot exist, which a read-only API token
	// gets 403 for. The probe is not repeated for that version, also not
	// after a restart of the operator.
	// +optional
	WriteAccessVerified string `json:"writeAccessVerified,omitempty"`

	// protectedSecret names the credentials Secret ("<namespace>/<name>")
	// that carries the finalizer access.servicetoken.dev/credentials-in-use on
	// this account's behalf: ServiceTokens of this account hold Cloudflare
	// tokens, and deleting them needs these credentials, also when the
	// Secret is deleted first (a namespace deletion) or the operator
	// restarts meanwhile. The finalizer is removed once no ServiceToken of an
	// account reading that Secret holds a token (or when spec.credentialsRef
	// moves to another Secret). Empty: this account protects no Secret.
	// +optional
	ProtectedSecret string `json:"protectedSecret,omitempty"`
}

// CloudflareAccount holds the Cloudflare account and credentials that
// ServiceTokens in its namespace use.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=cfaccount,categories=cloudflare
// +kubebuilder:printcolumn:name="Account",type=string,JSONPath=`.spec.accountID`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type CloudflareAccount struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec CloudflareAccountSpec `json:"spec"`
	// +optional
	Status AccountStatus `json:"status,omitempty"`
}

// CloudflareAccountList is a list of CloudflareAccount.
// +kubebuilder:object:root=true
type CloudflareAccountList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []CloudflareAccount `json:"items"`
}

// ClusterCloudflareAccount holds a Cloudflare account and credentials that
// ServiceTokens in any namespace allowed by its namespaceSelector can use.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=cfclusteraccount,categories=cloudflare
// +kubebuilder:printcolumn:name="Account",type=string,JSONPath=`.spec.accountID`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ClusterCloudflareAccount struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec ClusterCloudflareAccountSpec `json:"spec"`
	// +optional
	Status AccountStatus `json:"status,omitempty"`
}

// ClusterCloudflareAccountList is a list of ClusterCloudflareAccount.
// +kubebuilder:object:root=true
type ClusterCloudflareAccountList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterCloudflareAccount `json:"items"`
}
