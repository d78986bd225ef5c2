package main

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// WriteArchive writes idx to path as an OCI image layout in a tar file (an
// "oci-archive", as skopeo and podman call it). Its index.json has a single
// entry, the multi-arch index, named after ref when ref is given (for
// `podman load` and containerd's `docker load`). Entries are written in a
// fixed order with mtime zero, so the same index gives the same bytes.
func WriteArchive(idx v1.ImageIndex, path, ref string) error {
	dir, err := os.MkdirTemp("", "image-layout-")
	if err != nil {
		return fmt.Errorf("temporary layout: %w", err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	var opts []layout.Option
	if ref != "" {
		r, err := name.NewTag(ref)
		if err != nil {
			return fmt.Errorf("image reference: %w", err)
		}
		opts = append(opts, layout.WithAnnotations(map[string]string{
			RefNameAnnotation:          r.TagStr(),
			"io.containerd.image.name": r.Name(),
		}))
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("write layout: %w", err)
	}
	if err := p.AppendIndex(idx, opts...); err != nil {
		return fmt.Errorf("write layout: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if err := tarDir(f, dir); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func tarDir(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	// WalkDir visits in lexical order.
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: filepath.ToSlash(rel), ModTime: time.Unix(0, 0)}
		if d.IsDir() {
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, hdr.Name+"/", 0o755
			return tw.WriteHeader(hdr)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o644, int64(len(data))
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// ReadArchive reads the multi-arch index back from an archive WriteArchive
// wrote, unpacking it into dir (which must outlive the index: blobs are read
// from there on demand).
func ReadArchive(path, dir string) (v1.ImageIndex, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer func() { _ = f.Close() }()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		target := filepath.Join(dir, filepath.FromSlash(hdr.Name))
		if !strings.HasPrefix(target, filepath.Clean(dir)+string(filepath.Separator)) {
			return nil, fmt.Errorf("read %s: entry %q leaves the directory", path, hdr.Name)
		}
		if hdr.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(target, 0o755); err != nil {
				return nil, err
			}
			continue
		}
		if err := writeFile(target, tr); err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
	}
	outer, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("read layout: %w", err)
	}
	m, err := outer.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("read layout: %w", err)
	}
	if len(m.Manifests) != 1 || !m.Manifests[0].MediaType.IsIndex() {
		return nil, fmt.Errorf("index.json should hold one image index, it holds %d entries", len(m.Manifests))
	}
	return outer.ImageIndex(m.Manifests[0].Digest)
}

func writeFile(path string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
