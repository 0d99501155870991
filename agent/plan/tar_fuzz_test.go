package plan

import (
	"archive/tar"
	"bytes"
	"testing"
)

// The modules tree travels in the bundle as a tar: FromModulesTar reads
// any bytes without panicking, and LoadOrder on what it accepts ends.
func FuzzFromModulesTar(f *testing.F) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for name, body := range map[string]string{
		"6.12.0-test/modules.alias": aliasText,
		"6.12.0-test/modules.dep":   "kernel/drivers/block/virtio_blk.ko.xz: kernel/drivers/virtio/virtio.ko.xz\nkernel/drivers/virtio/virtio.ko.xz:\n",
	} {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body))})
		tw.Write([]byte(body))
	}
	tw.Close()
	f.Add(b.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := FromModulesTar(bytes.NewReader(data))
		if err != nil {
			return
		}
		a.Match("pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00")
		a.LoadOrder("virtio_blk")
	})
}
