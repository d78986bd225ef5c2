package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// machines are the ELF machines of the architectures an image may hold.
var machines = map[string]elf.Machine{
	"amd64": elf.EM_X86_64,
	"arm64": elf.EM_AARCH64,
}

// checkStaticELF fails unless bin is a 64-bit ELF executable for arch with no
// program interpreter and no shared libraries: it must run on an empty base.
func checkStaticELF(bin []byte, arch string) error {
	want, ok := machines[arch]
	if !ok {
		return fmt.Errorf("unsupported architecture %q", arch)
	}
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return fmt.Errorf("not an ELF file: %w", err)
	}
	defer func() { _ = f.Close() }()
	if f.Machine != want {
		return fmt.Errorf("ELF machine is %s, want %s", f.Machine, want)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("ELF type is %s, want an executable", f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked (it has a program interpreter); build with CGO_ENABLED=0")
		}
	}
	// A binary without a dynamic section has no imported libraries; that
	// error is not a finding.
	if libs, err := f.ImportedLibraries(); err == nil && len(libs) > 0 {
		return fmt.Errorf("needs shared libraries %v; build with CGO_ENABLED=0", libs)
	}
	return nil
}

// Check fails unless idx has the shape Build gives it for s: one linux image
// per architecture of s.Binaries, each running the static manager for its
// architecture as the nonroot user, with s's labels and a CA bundle.
// `make image` runs it on the tarball it wrote; the tests prove it notices
// each way an image can be wrong.
func Check(idx v1.ImageIndex, s Spec) error {
	im, err := idx.IndexManifest()
	if err != nil {
		return fmt.Errorf("index manifest: %w", err)
	}
	var archs []string
	for _, d := range im.Manifests {
		if d.Platform == nil || d.Platform.OS != "linux" {
			return fmt.Errorf("manifest %s: platform %v, want linux", d.Digest, d.Platform)
		}
		arch := d.Platform.Architecture
		archs = append(archs, arch)
		img, err := idx.Image(d.Digest)
		if err != nil {
			return fmt.Errorf("image for %s: %w", arch, err)
		}
		if err := checkImage(img, arch, s.Labels()); err != nil {
			return fmt.Errorf("image for %s: %w", arch, err)
		}
	}
	slices.Sort(archs)
	if want := slices.Sorted(maps.Keys(s.Binaries)); !slices.Equal(archs, want) {
		return fmt.Errorf("architectures %v, want %v", archs, want)
	}
	return nil
}

func checkImage(img v1.Image, arch string, labels map[string]string) error {
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	switch {
	case cf.OS != "linux" || cf.Architecture != arch:
		return fmt.Errorf("config platform %s/%s, want linux/%s", cf.OS, cf.Architecture, arch)
	case cf.Config.User != User:
		return fmt.Errorf("user %q, want %q", cf.Config.User, User)
	case !slices.Equal(cf.Config.Entrypoint, []string{Entrypoint}):
		return fmt.Errorf("entrypoint %q, want [%q]", cf.Config.Entrypoint, Entrypoint)
	case !maps.Equal(cf.Config.Labels, labels):
		return fmt.Errorf("labels %v, want %v", cf.Config.Labels, labels)
	}
	files, err := regularFiles(img)
	if err != nil {
		return err
	}
	bin, ok := files[Entrypoint[1:]]
	if !ok {
		return fmt.Errorf("no %s in the image", Entrypoint)
	}
	if err := checkStaticELF(bin, arch); err != nil {
		return fmt.Errorf("%s: %w", Entrypoint, err)
	}
	if block, _ := pem.Decode(files[CertsPath[1:]]); block == nil {
		return fmt.Errorf("no PEM certificates in %s", CertsPath)
	}
	return nil
}

// regularFiles reads the image's flattened file system: path (no leading
// slash) to contents. The image is small, a binary and a CA bundle.
func regularFiles(img v1.Image) (map[string][]byte, error) {
	rc := mutate.Extract(img)
	defer func() { _ = rc.Close() }()
	files := map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return files, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read layers: %w", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", hdr.Name, err)
		}
		files[hdr.Name] = data
	}
}
