package tlsoffload

import (
	"crypto/tls"
	"fmt"
	"slices"
	"strings"
)

// defaultCipherSuites are the TLS 1.2 suites offered when
// Config.CipherSuites is nil: ECDHE key exchange (forward secrecy) with an
// AEAD cipher, for ECDSA and RSA certificates alike. crypto/tls's own
// default adds the ECDHE CBC-SHA1 suites, whose MAC-then-encrypt
// construction is what Lucky13 and the padding oracles before it attacked;
// every FTPS client of the last decade offers one of these.
var defaultCipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// DefaultCipherSuites returns the TLS 1.2 cipher suites offered when
// Config.CipherSuites is nil: the ECDHE suites with AES-GCM or
// ChaCha20-Poly1305.
func DefaultCipherSuites() []uint16 { return slices.Clone(defaultCipherSuites) }

// ParseCipherSuite returns the ID of the TLS 1.2 cipher suite called name,
// as tls.CipherSuiteName prints it ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"),
// for Config.CipherSuites. weakness is "" for a suite crypto/tls counts as
// secure; for one of tls.InsecureCipherSuites it says what the suite gives
// up, for the caller to warn with. An unknown name is an error, and so is
// a TLS 1.3 suite: crypto/tls offers all three TLS 1.3 suites (all AEAD)
// whatever the configuration, so a list naming one would not do what it
// says.
func ParseCipherSuite(name string) (id uint16, weakness string, err error) {
	for _, cs := range tls.CipherSuites() {
		if cs.Name == name {
			if !slices.Contains(cs.SupportedVersions, tls.VersionTLS12) {
				return 0, "", fmt.Errorf("%s is a TLS 1.3 suite: Go always offers all three TLS 1.3 suites and lets none be chosen; list TLS 1.2 suites only", name)
			}
			return cs.ID, "", nil
		}
	}
	for _, cs := range tls.InsecureCipherSuites() {
		if cs.Name == name {
			return cs.ID, cipherWeakness(cs.Name), nil
		}
	}
	return 0, "", fmt.Errorf("unknown cipher suite %q: want a TLS 1.2 suite as Go names it, e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", name)
}

// cipherWeakness says what an insecure suite gives up, from its name.
func cipherWeakness(name string) string {
	var why []string
	if strings.HasPrefix(name, "TLS_RSA_") {
		why = append(why, "no forward secrecy (RSA key exchange: whoever obtains the private key decrypts every recorded session)")
	}
	switch {
	case strings.Contains(name, "_RC4_"):
		why = append(why, "RC4, whose biases recover plaintext (RFC 7465 forbids it)")
	case strings.Contains(name, "_3DES_"):
		why = append(why, "3DES, whose 64-bit blocks let a long session's plaintext be recovered (Sweet32)")
	case strings.HasSuffix(name, "_CBC_SHA256"):
		why = append(why, "CBC with HMAC-SHA256, which crypto/tls implements without the Lucky13 countermeasures")
	case strings.Contains(name, "_CBC_"):
		why = append(why, "CBC instead of an AEAD cipher (padding-oracle attacks such as Lucky13)")
	}
	if len(why) == 0 {
		return "what crypto/tls counts as insecure"
	}
	return strings.Join(why, "; ")
}

// cipherSuitesProblems checks Config.CipherSuites: each must be a TLS 1.2
// suite crypto/tls implements.
func (c Config) cipherSuitesProblems() []Problem {
	if c.CipherSuites != nil && len(c.CipherSuites) == 0 {
		return []Problem{{Field: "CipherSuites", Err: fmt.Errorf("empty: leave it out for the default AEAD suites, or set the minimum version to TLS 1.3 to refuse TLS 1.2")}}
	}
	var ps []Problem
	for i, id := range c.CipherSuites {
		name := tls.CipherSuiteName(id)
		if _, _, err := ParseCipherSuite(name); err != nil {
			ps = append(ps, Problem{Field: fmt.Sprintf("CipherSuites[%d]", i), Err: err})
		}
	}
	return ps
}

// cipherSuites is the list for tls.Config.CipherSuites.
func (c Config) cipherSuites() []uint16 {
	if c.CipherSuites == nil {
		return DefaultCipherSuites()
	}
	return slices.Clone(c.CipherSuites)
}
