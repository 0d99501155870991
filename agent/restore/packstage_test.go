package restore

import (
	"archive/tar"
	"bytes"
	"os"
	"strings"
	"testing"

	"aead.dev/minisign"

	"github.com/thawlinux/thaw/agent/plan"
	"github.com/thawlinux/thaw/images/driverpack"
	"github.com/thawlinux/thaw/images/manifest"
)

// ideCtl is an IDE controller that only the pack's ata_generic drives.
const ideCtl = "pci:v0000ABCDd00001234sv00000000sd00000000bc01sc01i8a"

// modulesTree is a modules tar of the test kernel: libata (Debian's
// xt_comment standing in, for its vermagic) and the tables.
func modulesTree(t *testing.T) []byte {
	t.Helper()
	ko, err := os.ReadFile("../../images/driverpack/testdata/xt_comment.ko")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, data := range map[string][]byte{
		"6.12.0-test/kernel/drivers/ata/libata.ko": ko,
		"6.12.0-test/modules.alias":                []byte("alias pci:v00001AF4d00001001sv*sd*bc*sc*i* virtio_blk\n"),
		"6.12.0-test/modules.dep":                  []byte("kernel/drivers/ata/libata.ko:\n"),
	} {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
		tw.Write(data)
	}
	tw.Close()
	return buf.Bytes()
}

// packOf writes a pack of ata_generic for release, signed by key.
func packOf(t *testing.T, release string, key minisign.PrivateKey) []byte {
	t.Helper()
	ko, err := os.ReadFile("../../images/driverpack/testdata/ata_generic.ko")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w := driverpack.NewWriter(&buf, release)
	if err := w.Add(ko); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(driverpack.BuildInfo{}, "", key); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestPlanPacks: thaw plan --packs against a machine whose disk
// controller the image kernel cannot drive: the pack's driver is taken,
// a pack that cannot be trusted or loaded is refused (check pack), and
// without one the refusal names the build.
func TestPlanPacks(t *testing.T) {
	f := loadFixture(t)
	pub, priv, _ := minisign.GenerateKey(nil)
	_, other, _ := minisign.GenerateKey(nil)
	// The source's disk sits on virtio at slot 3 with its root on dm: it
	// can move.
	src := sourceManifest()
	src.PCI = []manifest.PCIDevice{{Address: "0000:00:03.0", Vendor: "0x1af4", Device: "0x1001", Class: "0x010000", Modalias: "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00", Driver: "virtio-pci"}}
	src.Disks[0].PCI, src.Disks[0].Driver, src.Disks[0].DiskGUID, src.Disks[0].Movable = "0000:00:03.0", "virtio_blk", "6f1c2d3e-0000-4000-8000-000000000001", true
	b := writeBundle(t, &priv, src, map[string][]byte{"memory": f.mem, "disk0": f.disk, "modules": modulesTree(t)}, nil)
	good := packOf(t, "6.12.0-test", priv)
	flipped := bytes.Clone(good)
	flipped[len(flipped)-2048] ^= 1
	for _, tc := range []struct {
		name  string
		packs string
		pack  []byte
		check plan.Check // "" : ok
		want  string
	}{
		{"pack", "http://store/packs", good, "", "ata_generic (pack 6.12.0-test.pack)"},
		{"no pack", "http://store/missing-packs", nil, plan.CheckDriver, "thaw driverpack build --release 6.12.0-test --modules ata_generic"},
		{"other key", "http://store/packs", packOf(t, "6.12.0-test", other), plan.CheckPack, "does not verify"},
		{"other release", "http://store/packs", packOf(t, "6.12.1-test", priv), plan.CheckPack, "another kernel release"},
		{"flipped", "http://store/packs", flipped, plan.CheckPack, "SHA-256"},
		{"not asked for", "", nil, plan.CheckDriver, "thaw driverpack build"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, f, b)
			if tc.pack != nil {
				e.store.files[tc.packs+"/6.12.0-test.pack"] = tc.pack
			}
			target := sourceManifest()
			target.Kind, target.Image = "probe", nil
			target.PCI = []manifest.PCIDevice{{Address: "0000:00:06.0", Vendor: "0xabcd", Device: "0x1234", Class: "0x010180", Modalias: ideCtl, Driver: "ata_generic"}}
			target.Disks = []manifest.Disk{{Name: "sda", Size: diskSize, PCI: "0000:00:06.0"}}
			var out bytes.Buffer
			cfg := Config{Mode: Plan, Image: "http://store/b.thaw", Packs: tc.packs, Target: target, Disks: []string{"sda"},
				Trust: Trust{Keys: []NamedKey{{pub, "k"}}}}
			st, err := Run(t.Context(), e.Env, NewJSONReporter(&out), cfg)
			st.Close()
			if st.Plan == nil {
				t.Fatalf("no plan: %v", err)
			}
			text := out.String()
			var checks []string
			for _, r := range st.Plan.Refusals {
				checks = append(checks, string(r.Check))
				text += r.Reason + " " + r.Hint + "\n"
			}
			for _, d := range st.Plan.Drivers {
				text += DriverText(d) + "\n"
			}
			if got := strings.Join(checks, ","); !strings.Contains(got, string(tc.check)) || (tc.check == "" && got != "") {
				t.Errorf("refusals %q, want %q", got, tc.check)
			}
			if !strings.Contains(text, tc.want) {
				t.Errorf("the plan does not say %q:\n%s", tc.want, text)
			}
			fetched := false
			for _, ref := range e.store.refs {
				fetched = fetched || strings.HasSuffix(ref, ".pack")
			}
			if fetched != (tc.packs != "") {
				t.Errorf("pack fetched %v with thaw.packs %q: %v", fetched, tc.packs, e.store.refs)
			}
		})
	}
}
