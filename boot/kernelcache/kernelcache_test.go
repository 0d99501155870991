package kernelcache

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestLoad(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string // under the cache
		want  *Kernel           // Dir, Vmlinuz and Modules relative to the cache
		err   string
	}{
		{
			name: "fetched",
			files: map[string]string{
				"kernels/debian13-cloud/release": "6.12.48+deb13-cloud-amd64\n",
				"kernels/debian13-cloud/vmlinuz": "MZ",
			},
			want: &Kernel{Name: "debian13-cloud", Dir: "kernels/debian13-cloud", Release: "6.12.48+deb13-cloud-amd64",
				Vmlinuz: "kernels/debian13-cloud/vmlinuz", Modules: "kernels/debian13-cloud/modules"},
		},
		{name: "not fetched", err: "kernelcache: kernel debian13-cloud is not in"},
		{
			name:  "no image",
			files: map[string]string{"kernels/debian13-cloud/release": "6.12.48+deb13-cloud-amd64\n"},
			err:   "kernelcache: kernel debian13-cloud: ",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cache := t.TempDir()
			for name, content := range tt.files {
				p := filepath.Join(cache, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			t.Setenv("THAW_CACHE", cache)
			k, err := Load("debian13-cloud")
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Load: %+v, %v; want an error with %q", k, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			want := *tt.want
			for _, p := range []*string{&want.Dir, &want.Vmlinuz, &want.Modules} {
				*p = filepath.Join(cache, *p)
			}
			if !reflect.DeepEqual(*k, want) {
				t.Errorf("Load:\n got %+v\nwant %+v", *k, want)
			}
		})
	}
}

func TestDir(t *testing.T) {
	t.Setenv("THAW_CACHE", "")
	got, err := Dir()
	if err != nil {
		t.Fatal(err)
	}
	top, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(top, "build", "cache"); got != want {
		t.Errorf("Dir() = %s, want %s (build/cache beside go.mod)", got, want)
	}
	t.Setenv("THAW_CACHE", "relative/cache")
	if got, err := Dir(); err != nil || !filepath.IsAbs(got) || !strings.HasSuffix(got, filepath.Join("relative", "cache")) {
		t.Errorf("Dir() with THAW_CACHE=relative/cache = %s, %v; want it made absolute", got, err)
	}
}
