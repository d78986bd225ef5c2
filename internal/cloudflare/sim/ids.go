package sim

import (
	crand "crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"strings"
)

// SecretPrefix starts every client secret the simulator issues, like
// Cloudflare's post-2026-08-26 secrets.
const SecretPrefix = "cfast_"

const alphanumerics = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// idGen makes token IDs, client IDs and secrets from a seeded PRNG so a
// non-zero Options.Seed reproduces a run. It is not safe for concurrent use.
type idGen struct{ r *rand.Rand }

// newRand seeds a PRNG from seed, or from crypto/rand when seed is 0. stream
// separates independent generators built from one seed.
func newRand(seed int64, stream uint64) *rand.Rand {
	s := uint64(seed)
	if seed == 0 {
		var b [8]byte
		_, _ = crand.Read(b[:])
		s = binary.LittleEndian.Uint64(b[:])
	}
	return rand.New(rand.NewPCG(s, stream))
}

// uuid returns a random (version 4) UUID.
func (g idGen) uuid() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], g.r.Uint64())
	binary.LittleEndian.PutUint64(b[8:], g.r.Uint64())
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// clientID returns "<32 hex>.access".
func (g idGen) clientID() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], g.r.Uint64())
	binary.LittleEndian.PutUint64(b[8:], g.r.Uint64())
	return hex.EncodeToString(b[:]) + ".access"
}

// secret returns "cfast_" + 40 alphanumerics + an 8-hex-digit CRC-32 of what
// precedes it, so a truncated or mangled secret can be told from a wrong one.
func (g idGen) secret() string {
	var b strings.Builder
	b.WriteString(SecretPrefix)
	for range 40 {
		b.WriteByte(alphanumerics[g.r.IntN(len(alphanumerics))])
	}
	body := b.String()
	return body + fmt.Sprintf("%08x", crc32.ChecksumIEEE([]byte(body)))
}

// ValidSecretFormat reports whether s looks like a secret this simulator
// issues (prefix, 40 alphanumerics, matching checksum).
func ValidSecretFormat(s string) bool {
	if len(s) != len(SecretPrefix)+40+8 || !strings.HasPrefix(s, SecretPrefix) {
		return false
	}
	body := s[:len(SecretPrefix)+40]
	for _, c := range body[len(SecretPrefix):] {
		if !strings.ContainsRune(alphanumerics, c) {
			return false
		}
	}
	return s[len(body):] == fmt.Sprintf("%08x", crc32.ChecksumIEEE([]byte(body)))
}
