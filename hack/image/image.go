package main

import (
	"archive/tar"
	"bytes"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// The image's shape. The Dockerfile states the same user, entrypoint and
// labels; TestDockerfileMatchesBuilder keeps the two from drifting.
const (
	// User is distroless' "nonroot": no /etc/passwd is needed for a numeric user.
	User       = "65532:65532"
	Entrypoint = "/manager"
	// CertsPath is where Go's crypto/x509 looks first on Linux.
	CertsPath = "/etc/ssl/certs/ca-certificates.crt"

	// DefaultSource is the source label's default value.
	DefaultSource = "https://github.com/servicetoken-operator/servicetoken-operator"

	LabelSource   = "org.opencontainers.image.source"
	LabelVersion  = "org.opencontainers.image.version"
	LabelRevision = "org.opencontainers.image.revision"
	// RefNameAnnotation names the image in an OCI layout's index.json, for
	// `podman load` and `skopeo copy oci-archive:`.
	RefNameAnnotation = "org.opencontainers.image.ref.name"
)

// Spec is what an image is built from.
type Spec struct {
	// Binaries maps a GOARCH (amd64, arm64) to a static linux manager binary.
	Binaries map[string][]byte
	Source   string // repository URL, for the source label
	Version  string
	Revision string
	// Created is the config's creation time and every file's mtime; a fixed
	// time (the commit's) makes the image reproducible.
	Created time.Time
}

// Labels are the OCI labels an image built from s carries.
func (s Spec) Labels() map[string]string {
	return map[string]string{
		LabelSource:   s.Source,
		LabelVersion:  s.Version,
		LabelRevision: s.Revision,
	}
}

// Build returns a multi-arch OCI image index with one image per binary, each
// a single layer on an empty base: the manager and the CA certificates.
func Build(s Spec) (v1.ImageIndex, error) {
	if len(s.Binaries) == 0 {
		return nil, errors.New("no binaries")
	}
	for k, v := range s.Labels() {
		if v == "" {
			return nil, fmt.Errorf("label %s is empty", k)
		}
	}
	certs, err := caBundle()
	if err != nil {
		return nil, err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range slices.Sorted(maps.Keys(s.Binaries)) {
		bin := s.Binaries[arch]
		if err := checkStaticELF(bin, arch); err != nil {
			return nil, fmt.Errorf("binary for %s: %w", arch, err)
		}
		img, err := buildImage(s, arch, bin, certs)
		if err != nil {
			return nil, fmt.Errorf("image for %s: %w", arch, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
	}
	return idx, nil
}

func buildImage(s Spec, arch string, bin, certs []byte) (v1.Image, error) {
	files, err := layerTar(s.Created, bin, certs)
	if err != nil {
		return nil, err
	}
	layer, err := ociLayer(files)
	if err != nil {
		return nil, err
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Created = v1.Time{Time: s.Created}
	cf.Config = v1.Config{
		User:       User,
		Entrypoint: []string{Entrypoint},
		WorkingDir: "/",
		Labels:     s.Labels(),
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	return img, nil
}

// ociLayer is a gzipped OCI layer of the tar file files.
func ociLayer(files []byte) (v1.Layer, error) {
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(files)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	return layer, nil
}

// layerTar is the image's only layer: the binary, executable by the nonroot
// user, and the CA certificates, with their directories, all owned by root.
func layerTar(mtime time.Time, bin, certs []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := []string{"etc/", "etc/ssl/", "etc/ssl/certs/"}
	for _, d := range dirs {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: mtime}); err != nil {
			return nil, fmt.Errorf("tar %s: %w", d, err)
		}
	}
	files := []struct {
		name string
		mode int64
		data []byte
	}{
		{CertsPath[1:], 0o644, certs},
		{Entrypoint[1:], 0o755, bin},
	}
	for _, f := range files {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: mtime}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("tar %s: %w", f.name, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("tar %s: %w", f.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("tar: %w", err)
	}
	return buf.Bytes(), nil
}

// caBundle is Mozilla's root store as Go's x509roots/fallback embeds it, as
// PEM: pinned in go.mod, so the image does not depend on the build machine.
// Roots with a distrust-after date are left out: a PEM file cannot carry
// that constraint, and trusting them without it would trust too much.
func caBundle() ([]byte, error) {
	var buf bytes.Buffer
	for r := range bundle.Roots() {
		if r.Constraint != nil {
			continue
		}
		if err := pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: r.Certificate}); err != nil {
			return nil, fmt.Errorf("encode CA certificate: %w", err)
		}
	}
	if buf.Len() == 0 {
		return nil, errors.New("the CA bundle is empty")
	}
	return buf.Bytes(), nil
}
