package bootparam

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// key is minisign's documented example public key.
const key = "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3"

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name     string
		in       string
		want     Params
		warnings []string // substrings, one per warning
	}{
		{name: "empty", in: ""},
		{name: "no thaw parameters", in: "BOOT_IMAGE=/vmlinuz root=UUID=1234 ro quiet console=ttyS0\n"},
		{
			name: "all",
			in: "BOOT_IMAGE=/agent console=ttyS0 thaw.image=https://store.example:8443/web1.thaw thaw.pubkey=" + key +
				" thaw.disk=/dev/vda,vdb,/dev/disk/by-id/nvme-X_1 thaw.area=/dev/sdc2 thaw.token=s3cr3t thaw.log=http://10.0.0.1/log/web1" +
				" thaw.resume=kexec thaw.insecure=1 thaw.stage=2 thaw.iface=enp1s0 panic=-1\n",
			want: Params{
				Image: "https://store.example:8443/web1.thaw", PubKey: key,
				Disks: []string{"vda", "vdb", "disk/by-id/nvme-X_1"}, Area: "sdc2", Token: "s3cr3t",
				Log: "http://10.0.0.1/log/web1", Resume: "kexec", Insecure: true, Stage: 2, Iface: "enp1s0",
			},
		},
		{name: "quoted value", in: `thaw.image="http://h/a?x=1&y=2" ro`, want: Params{Image: "http://h/a?x=1&y=2"}},
		{name: "quoted parameter", in: `"thaw.image=http://h/b" ro`, want: Params{Image: "http://h/b"}},
		{name: "resume direct", in: "thaw.resume=direct", want: Params{Resume: ResumeDirect}},
		{name: "resume auto", in: "thaw.resume=auto", want: Params{Resume: ResumeAuto}},
		{name: "insecure bare", in: "thaw.insecure", want: Params{Insecure: true}},
		{name: "insecure yes", in: "thaw.insecure=Yes", want: Params{Insecure: true}},
		{name: "insecure off", in: "thaw.insecure=0", want: Params{}},
		{name: "transfer limits", in: "thaw.retries=3 thaw.minrate=64k thaw.deadline=90m", want: Params{Retries: 3, MinRate: 64 << 10, Deadline: 90 * time.Minute}},
		{name: "transfer limits off", in: "thaw.retries=0 thaw.minrate=0", want: Params{Retries: -1, MinRate: -1}},
		{name: "minrate bytes", in: "thaw.minrate=1000", want: Params{MinRate: 1000}},
		{name: "pinned image", in: "thaw.image=http://h/a.thaw#sha256=" + strings.Repeat("0f", 32), want: Params{Image: "http://h/a.thaw#sha256=" + strings.Repeat("0f", 32)}},
		{name: "stage 1", in: "thaw.stage=1", want: Params{Stage: 1}},
		{name: "stick image", in: "thaw.image=usb:web1.thaw thaw.kernel=file:/run/thaw/stick-esp/thaw/vmlinuz#sha256=" + strings.Repeat("ab", 32),
			want: Params{Image: "usb:web1.thaw", Kernel: "file:/run/thaw/stick-esp/thaw/vmlinuz#sha256=" + strings.Repeat("ab", 32)}},
		{name: "identity https", in: "thaw.identity=https://h:8443/keys/web1.identity", want: Params{Identity: "https://h:8443/keys/web1.identity"}},
		{name: "identity stick", in: "thaw.identity=usb:web1.identity", want: Params{Identity: "usb:web1.identity"}},
		{name: "file image pinned", in: "thaw.image=file:/mnt/b.thaw#sha256=" + strings.Repeat("0f", 32), want: Params{Image: "file:/mnt/b.thaw#sha256=" + strings.Repeat("0f", 32)}},
		{name: "empty values are absent", in: "thaw.image= thaw.pubkey= thaw.token= thaw.log= thaw.area= thaw.disk= thaw.resume= thaw.insecure= thaw.stage= thaw.iface="},
		{
			name:     "last wins",
			in:       "thaw.image=http://a/1 thaw.disk=vda,vdb thaw.image=http://b/2 thaw.disk=sda",
			want:     Params{Image: "http://b/2", Disks: []string{"sda"}},
			warnings: []string{"thaw.image is given 2 times: the last one (thaw.image=http://b/2)", "thaw.disk is given 2 times: the last one (thaw.disk=sda)"},
		},
		{
			name:     "empty withdraws",
			in:       "thaw.disk=vda thaw.disk=",
			want:     Params{},
			warnings: []string{"thaw.disk is given 2 times"},
		},
		{
			name:     "only the last is checked",
			in:       "thaw.resume=fast thaw.resume=direct",
			want:     Params{Resume: ResumeDirect},
			warnings: []string{"thaw.resume is given 2 times"},
		},
		{
			name:     "repeated token hidden",
			in:       "thaw.token=a thaw.token=b",
			want:     Params{Token: "b"},
			warnings: []string{"thaw.token is given 2 times: the last one (thaw.token=…) counts"},
		},
		{
			name:     "after --",
			in:       "thaw.image=http://a/1 -- thaw.image=http://b/2 thaw.bogus=1 single",
			want:     Params{Image: "http://a/1"},
			warnings: []string{`thaw.image comes after "--"`, `thaw.bogus comes after "--"`},
		},
		{name: "not ours", in: "thawed=1 thaw=1 THAWING=2 xthaw.image=1 foo.thaw.image=2"},
		{name: "NUL ends", in: "thaw.image=http://a/1\x00thaw.bogus=1", want: Params{Image: "http://a/1"}},
		{
			name:     "too long",
			in:       "thaw.image=http://a/1 x=" + strings.Repeat("y", MaxCmdline),
			want:     Params{Image: "http://a/1"},
			warnings: []string{"x86 kernel's limit"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse(tc.in)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			warnings := p.Warnings
			p.Warnings = nil
			if !reflect.DeepEqual(*p, tc.want) {
				t.Errorf("Parse(%q) =\n%#v\nwant\n%#v", tc.in, *p, tc.want)
			}
			if len(warnings) != len(tc.warnings) {
				t.Fatalf("warnings %q, want %d like %q", warnings, len(tc.warnings), tc.warnings)
			}
			for i, w := range tc.warnings {
				if !strings.Contains(warnings[i], w) {
					t.Errorf("warning %d = %q, want it to contain %q", i, warnings[i], w)
				}
			}
			if err := p.Validate(false); err != nil {
				t.Errorf("Validate(false) after a clean Parse: %v", err)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		kind error
		// want holds substrings of the message, which must name the
		// parameter and the fix.
		want []string
	}{
		{"unknown typo", "thaw.imgae=http://a/1", ErrUnknown, []string{"thaw.imgae=http://a/1", "unknown thaw parameter", "did you mean thaw.image?"}},
		{"unknown case", "Thaw.Image=http://a/1", ErrUnknown, []string{"Thaw.Image", "did you mean thaw.image?"}},
		{"unknown underscore", "thaw_disk=vda", ErrUnknown, []string{"thaw_disk", "did you mean thaw.disk?"}},
		{"unknown far", "thaw.frobnicate=1", ErrUnknown, []string{"thaw.frobnicate", "the agent knows thaw.image, thaw.pubkey"}},
		{"unknown near token hides value", "thaw.tokn=hunter2", ErrUnknown, []string{"thaw.tokn:", "did you mean thaw.token?"}},
		{"no value", "thaw.image", ErrInvalid, []string{"thaw.image: invalid value: no value", "thaw.image=http://HOST:PORT/BUNDLE"}},
		{"retries", "thaw.retries=many", ErrInvalid, []string{"thaw.retries=many", "thaw.retries=5"}},
		{"minrate", "thaw.minrate=fast", ErrInvalid, []string{"thaw.minrate=fast", "thaw.minrate=16k"}},
		{"minrate bare", "thaw.minrate", ErrInvalid, []string{"thaw.minrate"}},
		{"deadline", "thaw.deadline=tomorrow", ErrInvalid, []string{"thaw.deadline=tomorrow", "thaw.deadline=24h"}},
		{"image pin", "thaw.image=http://h/a.thaw#sha256=abc", ErrInvalid, []string{"64 hex digits", "thaw.image=http://h/a.thaw#sha256=DIGEST"}},
		{"log fragment", "thaw.log=http://h/log/x#y", ErrInvalid, []string{"thaw.log"}},
		{"no scheme", "thaw.image=10.0.0.1:8080/web1.thaw", ErrInvalid, []string{"no http:// or https://", "fix: thaw.image=http://10.0.0.1:8080/web1.thaw"}},
		{"tftp", "thaw.image=tftp://10.0.0.1/web1", ErrInvalid, []string{"not tftp", "http://"}},
		{"usb path", "thaw.image=usb:../etc/shadow", ErrInvalid, []string{"usb: takes the name of a file", "thaw.image=usb:web1.thaw"}},
		{"usb empty", "thaw.image=usb:", ErrInvalid, []string{"usb: takes the name"}},
		{"usb dot", "thaw.image=usb:.hidden", ErrInvalid, []string{"not starting with '.'"}},
		{"usb pin", "thaw.image=usb:a.thaw#sha256=12", ErrInvalid, []string{"64 hex digits"}},
		{"identity http", "thaw.identity=http://h/k.identity", ErrInvalid, []string{"cross the network in clear", "thaw.identity=https://"}},
		{"identity HTTP", "thaw.identity=HTTP://h/k.identity", ErrInvalid, []string{"in clear"}},
		{"file relative", "thaw.image=file:b.thaw", ErrInvalid, []string{"absolute path"}},
		{"file dotdot", "thaw.kernel=file:/run/../etc/x#sha256=" + strings.Repeat("ab", 32), ErrInvalid, []string{"without .."}},
		{"no host", "thaw.log=http:///log/x", ErrInvalid, []string{"thaw.log=http:///log/x", "no host"}},
		{"bad port", "thaw.image=http://h:99999/x", ErrInvalid, []string{"port 99999"}},
		{"space in url", `thaw.image="http://h/a b"`, ErrInvalid, []string{"a space at offset 10", "%20"}},
		{"stray quote", `thaw.image=http://h/"a`, ErrInvalid, []string{`'"'`}},
		{"non-ascii", "thaw.iface=eth\xc3\xa9", ErrInvalid, []string{"byte 0xc3"}},
		{"pubkey file", "thaw.pubkey=/etc/thaw/web.pub", ErrInvalid, []string{"a file name, not a key", "second line"}},
		{"pubkey comment", "thaw.pubkey=untrusted", ErrInvalid, []string{"comment line"}},
		{"pubkey short", "thaw.pubkey=RWQf6LRCGA9i53ml", ErrInvalid, []string{"12 bytes", "has 42"}},
		{"pubkey not base64", "thaw.pubkey=RW!!", ErrInvalid, []string{"not base64"}},
		{"pubkey wrong alg", "thaw.pubkey=" + strings.Replace(key, "RW", "RU", 1), ErrInvalid, []string{`algorithm "ED"`}},
		{"disk empty slot", "thaw.disk=vda,,vdb", ErrInvalid, []string{"disk 2 of the list is empty"}},
		{"disk twice", "thaw.disk=vda,/dev/vda", ErrInvalid, []string{"vda is listed twice"}},
		{"disk outside dev", "thaw.disk=/tmp/x.img", ErrInvalid, []string{"/tmp/x.img is not under /dev"}},
		{"disk dotdot", "thaw.disk=/dev/../etc/passwd", ErrInvalid, []string{"not a clean device path"}},
		{"disk dev without slash", "thaw.disk=dev/vda", ErrInvalid, []string{"lacks its leading /"}},
		{"area on a target", "thaw.area=vdb thaw.disk=vda,/dev/vdb", ErrInvalid, []string{"thaw.area=vdb", "also a thaw.disk target"}},
		{"area outside dev", "thaw.area=/swapfile", ErrInvalid, []string{"thaw.area=/swapfile", "not under /dev", "vdb2"}},
		{"resume", "thaw.resume=fast", ErrInvalid, []string{"thaw.resume=fast", "not direct or kexec", "thaw.resume=direct"}},
		{"insecure", "thaw.insecure=maybe", ErrInvalid, []string{"thaw.insecure=maybe", "thaw.insecure=1"}},
		{"stage word", "thaw.stage=two", ErrInvalid, []string{"thaw.stage=two", "leave it out"}},
		{"stage 3", "thaw.stage=3", ErrInvalid, []string{"thaw.stage=3", "stages 1 and 2"}},
		{"iface long", "thaw.iface=abcdefghijklmnop", ErrInvalid, []string{"16 characters"}},
		{"iface slash", "thaw.iface=a/b", ErrInvalid, []string{"not a valid link name"}},
		{"token hidden", "thaw.token=\"hunter2 x\"", ErrInvalid, []string{"thaw.token: invalid value: a space"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.in)
			if err == nil {
				t.Fatalf("Parse(%q): no error", tc.in)
			}
			if !errors.Is(err, tc.kind) {
				t.Errorf("error %v is not %v", err, tc.kind)
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if strings.Contains(msg, "hunter2") {
				t.Errorf("error %q shows a token", msg)
			}
			if len(Errors(err)) != 1 {
				t.Errorf("Errors: %d, want 1", len(Errors(err)))
			}
		})
	}
}

// TestParseAllErrors: one Parse reports every bad parameter, and still
// returns the good ones.
func TestParseAllErrors(t *testing.T) {
	p, err := Parse("thaw.log=http://10.0.0.1/log/a thaw.resume=fast thaw.imgae=x thaw.disk=vda,vda thaw.stage=9")
	errs := Errors(err)
	var names []string
	for _, e := range errs {
		names = append(names, e.Param)
	}
	if want := []string{"thaw.imgae", "thaw.resume", "thaw.disk", "thaw.stage"}; !reflect.DeepEqual(names, want) {
		t.Errorf("errors for %q, want %q", names, want)
	}
	if p == nil || p.Log != "http://10.0.0.1/log/a" {
		t.Errorf("Parse kept %+v, want the valid thaw.log", p)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		p     Params
		agent bool
		kind  error
		want  string
	}{
		{name: "empty, not agent", p: Params{}},
		{name: "agent without image", p: Params{Disks: []string{"vda"}}, agent: true, kind: ErrMissing, want: "thaw.image: missing parameter"},
		{name: "agent with image", p: Params{Image: "http://a/b"}, agent: true},
		// Without thaw.area= the image goes into the server's own swap, if the
		// bundle reserved room there: the plan decides, not the parameters.
		{name: "agent kexec without area", p: Params{Image: "http://a/b", Resume: ResumeKexec}, agent: true},
		{name: "agent kexec with area", p: Params{Image: "http://a/b", Resume: ResumeKexec, Area: "sdb2"}, agent: true},
		{name: "not agent kexec without area", p: Params{Resume: ResumeKexec}},
		{name: "area is a disk", p: Params{Disks: []string{"vda"}, Area: "vda"}, kind: ErrInvalid, want: "also a thaw.disk target"},
		{name: "bad url", p: Params{Image: "ftp://a/b"}, kind: ErrInvalid, want: "not ftp"},
		{name: "bad log", p: Params{Log: "a/b"}, kind: ErrInvalid, want: "thaw.log=a/b"},
		{name: "resume", p: Params{Resume: "auto"}, kind: ErrInvalid, want: "thaw.resume=auto"},
		{name: "stage", p: Params{Stage: 5}, kind: ErrInvalid, want: "thaw.stage=5"},
		{name: "disk with /dev", p: Params{Disks: []string{"/dev/vda"}}, kind: ErrInvalid, want: "not under /dev"},
		{name: "disk empty", p: Params{Disks: []string{""}}, kind: ErrInvalid, want: "empty"},
		{name: "pubkey", p: Params{PubKey: "RW"}, kind: ErrInvalid, want: "thaw.pubkey=RW"},
		{name: "token space", p: Params{Token: "a b"}, kind: ErrInvalid, want: "thaw.token: invalid value: a space"},
		{name: "iface", p: Params{Iface: "a:b"}, kind: ErrInvalid, want: "thaw.iface=a:b"},
		{name: "follow", p: Params{Image: "https://a/b.thaw", Follow: true}, agent: true},
		{name: "follow a stick", p: Params{Image: "usb:b.thaw", Follow: true}, agent: true, kind: ErrInvalid, want: "must be its http(s):// URL"},
		{name: "follow a pin", p: Params{Image: "http://a/b.thaw#sha256=" + strings.Repeat("0", 64), Follow: true}, agent: true, kind: ErrInvalid, want: "cannot be pinned"},
		{name: "follow a presigned URL", p: Params{Image: "https://a/b.thaw?X-Amz-Signature=1", Follow: true}, agent: true, kind: ErrInvalid, want: "presigned"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Validate(tc.agent)
			if tc.kind == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want %v containing %q", err, tc.kind, tc.want)
			}
		})
	}
}

func TestArgsRoundTrip(t *testing.T) {
	p := &Params{
		Image: "http://10.0.0.1:8080/a.thaw", PubKey: key, Disks: []string{"vda", "disk/by-id/x"}, Area: "vdb2",
		Token: "t0k", Log: "http://10.0.0.1:8080/log/a", Resume: ResumeKexec, Insecure: true, Stage: 2, Iface: "eth0",
		Retries: -1, MinRate: 1 << 20, Deadline: 36 * time.Hour, Follow: true,
	}
	want := "thaw.image=http://10.0.0.1:8080/a.thaw thaw.pubkey=" + key + " thaw.disk=vda,disk/by-id/x thaw.area=vdb2 thaw.token=t0k" +
		" thaw.log=http://10.0.0.1:8080/log/a thaw.resume=kexec thaw.insecure=1 thaw.stage=2 thaw.iface=eth0" +
		" thaw.retries=0 thaw.minrate=1048576 thaw.deadline=36h0m0s thaw.follow=1"
	if got := p.Cmdline(); got != want {
		t.Errorf("Cmdline =\n%s\nwant\n%s", got, want)
	}
	if s := p.String(); strings.Contains(s, "t0k") || !strings.Contains(s, "thaw.token=…") {
		t.Errorf("String shows the token or hides its presence: %s", s)
	}
	q, err := Parse("console=ttyS0 " + p.Cmdline())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p, q) {
		t.Errorf("round trip: %+v, want %+v", q, p)
	}
}

func TestFromProc(t *testing.T) {
	b, err := os.ReadFile(ProcCmdline)
	if err != nil {
		t.Skipf("no %s: %v", ProcCmdline, err)
	}
	p, err := FromProc()
	if _, perr := Parse(string(b)); (err == nil) != (perr == nil) {
		t.Errorf("FromProc error %v, Parse error %v", err, perr)
	}
	if err == nil && p == nil {
		t.Error("FromProc returned nil Params without an error")
	}
}

// FuzzParse: Parse never panics, a successful Parse validates, and its
// Cmdline parses back to the same Params.
func FuzzParse(f *testing.F) {
	f.Add("")
	f.Add("BOOT_IMAGE=/vmlinuz root=UUID=1 ro quiet thaw.image=http://10.0.0.1:8080/a thaw.disk=/dev/vda,vdb\n")
	f.Add(`"thaw.image=http://h/b" thaw.token="x" thaw.insecure -- thaw.stage=2`)
	f.Add("thaw.area=/dev/vdb2 thaw.disk=vda thaw.pubkey=" + key + " thaw.resume=kexec thaw.stage=2 thaw.iface=eth0 thaw.log=https://h/log/x")
	f.Add(`thaw.image="http://h/b thaw.disk=vda,,vdb thaw.imgae=1 THAW.x "--" thaw.x`)
	f.Add("a=\"\x00thaw.image=\xa0\"")
	if b, err := os.ReadFile(ProcCmdline); err == nil {
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, in string) {
		p, err := Parse(in)
		if p == nil {
			t.Fatalf("Parse(%q) returned nil Params (err %v)", in, err)
		}
		for _, e := range Errors(err) {
			if e.Param == "" || e.Kind == nil || !strings.HasPrefix(strings.ToLower(e.Param), "thaw") {
				t.Fatalf("Parse(%q): malformed error %#v", in, e)
			}
		}
		if err != nil {
			if len(Errors(err)) == 0 {
				t.Fatalf("Parse(%q): error %v holds no *Error", in, err)
			}
			return
		}
		if err := p.Validate(false); err != nil {
			t.Fatalf("Parse(%q) = %+v passes, Validate fails: %v", in, p, err)
		}
		p.Warnings = nil
		q, err := Parse(p.Cmdline())
		if err != nil {
			t.Fatalf("Parse(Cmdline %q of %q): %v", p.Cmdline(), in, err)
		}
		for _, w := range q.Warnings {
			if !strings.Contains(w, "x86 kernel's limit") {
				t.Fatalf("Parse(Cmdline %q): warning %q", p.Cmdline(), w)
			}
		}
		q.Warnings = nil
		if !reflect.DeepEqual(p, q) {
			t.Fatalf("round trip of %q:\n%+v\n%+v", in, p, q)
		}
	})
}
