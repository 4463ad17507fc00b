package bench

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"io"
	"net/http"

	"github.com/gin-gonic/gin"
	jose "github.com/go-jose/go-jose/v4"
)

// The jose case: the hand-rolled alternative with the same guarantees as a
// dynkey message, minus replay protection and key rotation. A request is a
// compact JWE (ECDH-ES+A256KW, A256GCM) to the server's P-256 key of a
// compact JWS (EdDSA) by the client's Ed25519 key; the response is a JWE to
// the client's P-256 key of a JWS by the server's Ed25519 key.

// joseMediaType is the content type of jose requests and responses.
const joseMediaType = "application/jose"

var (
	joseKeyAlgs = []jose.KeyAlgorithm{jose.ECDH_ES_A256KW}
	joseEncAlgs = []jose.ContentEncryption{jose.A256GCM}
	joseSigAlgs = []jose.SignatureAlgorithm{jose.EdDSA}
)

// joseSealer signs with one Ed25519 key and encrypts to one P-256 key.
type joseSealer struct {
	signer    jose.Signer
	encrypter jose.Encrypter
}

func newJoseSealer(sig ed25519.PrivateKey, to *ecdsa.PublicKey) (*joseSealer, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: sig}, nil)
	if err != nil {
		return nil, err
	}
	encrypter, err := jose.NewEncrypter(jose.A256GCM, jose.Recipient{Algorithm: jose.ECDH_ES_A256KW, Key: to},
		(&jose.EncrypterOptions{}).WithContentType("JWT"))
	if err != nil {
		return nil, err
	}
	return &joseSealer{signer: signer, encrypter: encrypter}, nil
}

// seal returns the compact JWE of the compact JWS of payload.
func (s *joseSealer) seal(payload []byte) ([]byte, error) {
	jws, err := s.signer.Sign(payload)
	if err != nil {
		return nil, err
	}
	inner, err := jws.CompactSerialize()
	if err != nil {
		return nil, err
	}
	jwe, err := s.encrypter.Encrypt([]byte(inner))
	if err != nil {
		return nil, err
	}
	out, err := jwe.CompactSerialize()
	return []byte(out), err
}

// joseOpen decrypts a compact JWE with priv and verifies the JWS inside
// with from, returning the payload. Algorithms are allow-listed.
func joseOpen(b []byte, priv *ecdsa.PrivateKey, from ed25519.PublicKey) ([]byte, error) {
	jwe, err := jose.ParseEncryptedCompact(string(b), joseKeyAlgs, joseEncAlgs)
	if err != nil {
		return nil, err
	}
	inner, err := jwe.Decrypt(priv)
	if err != nil {
		return nil, err
	}
	jws, err := jose.ParseSignedCompact(string(inner), joseSigAlgs)
	if err != nil {
		return nil, err
	}
	return jws.Verify(from)
}

// joseServer is the jose case's server.
type joseServer struct {
	keys      *joseKeys
	clientSig ed25519.PublicKey
	sealer    *joseSealer
}

func newJoseServer(spec *childSpec) (*joseServer, error) {
	keys, err := newJoseKeys()
	if err != nil {
		return nil, err
	}
	sig, enc, err := parseJosePublic(spec.JoseClientSig, spec.JoseClientEnc)
	if err != nil {
		return nil, err
	}
	sealer, err := newJoseSealer(keys.sig, enc)
	if err != nil {
		return nil, err
	}
	return &joseServer{keys: keys, clientSig: sig, sealer: sealer}, nil
}

func (s *joseServer) publicKeys() (sig, enc []byte) { return s.keys.public() }

// serve opens the request, echoes its payload and seals the answer.
func (s *joseServer) serve(c *gin.Context) {
	b, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, 4<<20))
	if err != nil {
		c.Status(http.StatusRequestEntityTooLarge)
		return
	}
	payload, err := joseOpen(b, s.keys.enc, s.clientSig)
	if err != nil {
		c.Status(http.StatusBadRequest)
		return
	}
	out, err := s.sealer.seal(payload)
	if err != nil {
		c.Status(http.StatusInternalServerError)
		return
	}
	c.Data(http.StatusOK, joseMediaType, out)
}
