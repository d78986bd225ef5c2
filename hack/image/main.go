// Command image builds the manager's OCI image without a container engine:
// a multi-arch index (one image per static binary) on an empty base, running
// as the nonroot user 65532, with OCI labels. `make image` cross-compiles the
// binaries and runs it:
//
//	go run ./hack/image -bin amd64=dist/image/manager-linux-amd64 \
//	    -bin arm64=dist/image/manager-linux-arm64 -version 0.1.0 \
//	    -revision $(git rev-parse HEAD) -created $(git log -1 --format=%ct) \
//	    -ref ghcr.io/you/servicetoken-operator:0.1.0 -out dist/image.tar
//
// It writes an OCI layout tarball, reads it back and checks its shape (see
// Check) before it succeeds; with -push it then pushes that index to the
// registry, with the credentials of ~/.docker/config.json (`crane auth
// login`, `docker login`), and prints the pushed digest. -write-certs only
// writes the image's CA bundle, so that the Dockerfile ships the same one.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// binFlags collects -bin arch=path.
type binFlags map[string]string

func (b binFlags) String() string { return fmt.Sprint(map[string]string(b)) }

func (b binFlags) Set(v string) error {
	arch, path, ok := strings.Cut(v, "=")
	if !ok || arch == "" || path == "" {
		return fmt.Errorf("want arch=path, got %q", v)
	}
	b[arch] = path
	return nil
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	bins := binFlags{}
	fs.Var(bins, "bin", "arch=path of a static linux manager binary (repeat per architecture)")
	source := fs.String("source", DefaultSource, "repository URL (label "+LabelSource+")")
	version := fs.String("version", "", "version (label "+LabelVersion+")")
	revision := fs.String("revision", "", "git commit (label "+LabelRevision+")")
	created := fs.Int64("created", 0, "creation time in Unix seconds, e.g. the commit's (SOURCE_DATE_EPOCH)")
	ref := fs.String("ref", "", "image reference (registry/repository:tag) to name the image in the archive")
	out := fs.String("out", "dist/image.tar", "the OCI layout tarball to write")
	push := fs.String("push", "", "push the image to this reference after checking it")
	digestFile := fs.String("digest-file", "", "with -push, write the pushed image's digest (sha256:...) here")
	writeCerts := fs.String("write-certs", "", "only write the image's CA bundle (PEM) to this file (for the Dockerfile)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *writeCerts != "" {
		certs, err := caBundle()
		if err != nil {
			return err
		}
		return os.WriteFile(*writeCerts, certs, 0o644)
	}

	s := Spec{Binaries: map[string][]byte{}, Source: *source, Version: *version, Revision: *revision,
		Created: time.Unix(*created, 0).UTC()}
	for arch, path := range bins {
		bin, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read binary: %w", err)
		}
		s.Binaries[arch] = bin
	}
	idx, err := Build(s)
	if err != nil {
		return err
	}
	if err := WriteArchive(idx, *out, *ref); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "image-check-")
	if err != nil {
		return fmt.Errorf("temporary directory: %w", err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	written, err := ReadArchive(*out, dir)
	if err != nil {
		return err
	}
	if err := Check(written, s); err != nil {
		return fmt.Errorf("%s: %w", *out, err)
	}
	digest, err := written.Digest()
	if err != nil {
		return fmt.Errorf("digest: %w", err)
	}
	fmt.Printf("wrote %s: %d architectures, version %s, digest %s\n", *out, len(s.Binaries), s.Version, digest)
	if *push == "" {
		return nil
	}
	dst, err := name.ParseReference(*push)
	if err != nil {
		return fmt.Errorf("push reference: %w", err)
	}
	if err := remote.WriteIndex(dst, written, remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return fmt.Errorf("push %s: %w", dst, err)
	}
	fmt.Printf("pushed %s@%s\n", dst.Context(), digest)
	if *digestFile != "" {
		if err := os.WriteFile(*digestFile, []byte(digest.String()+"\n"), 0o644); err != nil {
			return fmt.Errorf("write digest: %w", err)
		}
	}
	return nil
}
