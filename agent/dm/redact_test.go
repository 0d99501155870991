package dm

import (
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	const key = "4a1f0c9e8b7d6a5f4e3d2c1b0a99887766554433221100ffeeddccbbaa998877"
	for _, tc := range []struct{ name, in, want string }{
		{"crypt, hex key", "0 2048 crypt aes-xts-plain64 " + key + " 0 254:1 4096",
			"0 2048 crypt aes-xts-plain64 <hidden> 0 254:1 4096"},
		{"crypt, key and features", "0 2048 crypt aes-xts-plain64 " + key + " 0 8:2 32768 1 allow_discards",
			"0 2048 crypt aes-xts-plain64 <hidden> 0 8:2 32768 1 allow_discards"},
		{"crypt, keyring reference kept", "0 2048 crypt aes-xts-plain64 :64:logon:cryptsetup:LUKS2-abc-d0 0 254:2 32768",
			"0 2048 crypt aes-xts-plain64 :64:logon:cryptsetup:LUKS2-abc-d0 0 254:2 32768"},
		{"crypt, no key", "0 2048 crypt cipher_null-ecb - 0 8:1 0", "0 2048 crypt cipher_null-ecb - 0 8:1 0"},
		{"integrity", "0 1024 integrity 8:3 0 4 J 3 internal_hash:hmac(sha256):" + key + " journal_crypt:ctr(aes):" + key + " block_size:4096",
			"0 1024 integrity 8:3 0 4 J 3 internal_hash:hmac(sha256):<hidden> journal_crypt:ctr(aes):<hidden> block_size:4096"},
		{"integrity, unkeyed hash", "0 1024 integrity 8:3 0 4 J 1 internal_hash:crc32c", "0 1024 integrity 8:3 0 4 J 1 internal_hash:crc32c"},
		{"linear untouched, two lines", "0 100 linear 8:2 2048\n100 2048 crypt aes-cbc-essiv:sha256 " + key + " 0 8:3 0",
			"0 100 linear 8:2 2048\n100 2048 crypt aes-cbc-essiv:sha256 <hidden> 0 8:3 0"},
		{"unparsable hidden whole", "0 x crypt aes " + key, Hidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := RedactTable(tc.in)
			if got != tc.want {
				t.Errorf("RedactTable\n got %q\nwant %q", got, tc.want)
			}
			if strings.Contains(got, key) {
				t.Errorf("the key survives: %q", got)
			}
		})
	}
}
