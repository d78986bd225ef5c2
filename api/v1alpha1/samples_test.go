package v1alpha1_test

import (
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/servicetoken-operator/servicetoken-operator/internal/testenv"
)

var _ = Describe("config/samples", func() {
	It("holds one sample of each kind, and the API server accepts each", func() {
		files, err := filepath.Glob(filepath.Join(testenv.RepoRoot(), "config", "samples", "access_*.yaml"))
		Expect(err).NotTo(HaveOccurred())
		kinds := map[string]bool{}
		for _, f := range files {
			data, err := os.ReadFile(f)
			Expect(err).NotTo(HaveOccurred())
			u := &unstructured.Unstructured{}
			Expect(yaml.Unmarshal(data, &u.Object)).To(Succeed(), f)
			Expect(k8sClient.Create(ctx, u)).To(Succeed(), f)
			kinds[u.GetKind()] = true
		}
		Expect(kinds).To(HaveKey("ServiceToken"))
		Expect(kinds).To(HaveKey("CloudflareAccount"))
		Expect(kinds).To(HaveKey("ClusterCloudflareAccount"))
	})
})

var _ = Describe("The generated CRDs", func() {
	It("document every field, so kubectl explain teaches it", func() {
		files, err := filepath.Glob(filepath.Join(testenv.RepoRoot(), "config", "crd", "bases", "*.yaml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(files).To(HaveLen(3))
		var undocumented []string
		for _, f := range files {
			data, err := os.ReadFile(f)
			Expect(err).NotTo(HaveOccurred())
			crd := &apiextensionsv1.CustomResourceDefinition{}
			Expect(yaml.Unmarshal(data, crd)).To(Succeed())
			for _, v := range crd.Spec.Versions {
				walkSchema(crd.Spec.Names.Kind, *v.Schema.OpenAPIV3Schema, &undocumented)
			}
		}
		Expect(undocumented).To(BeEmpty())
	})
})

// walkSchema records every property below spec and status without a description.
func walkSchema(path string, s apiextensionsv1.JSONSchemaProps, missing *[]string) {
	for name, p := range s.Properties {
		child := path + "." + name
		if name == "metadata" || name == "apiVersion" || name == "kind" {
			continue
		}
		if strings.TrimSpace(p.Description) == "" {
			*missing = append(*missing, child)
		}
		walkSchema(child, p, missing)
		if p.Items != nil && p.Items.Schema != nil {
			walkSchema(child+"[]", *p.Items.Schema, missing)
		}
	}
}
