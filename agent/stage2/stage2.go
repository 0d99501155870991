package stage2

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/u-root/u-root/pkg/cpio"
)

// StatePath is where the second stage finds the State.
const StatePath = "/etc/thaw/stage2.json"

// State is what the first stage did and decided.
type State struct {
	Image       string             `json:"image"`        // the bundle's URL
	IndexSHA256 string             `json:"index_sha256"` // the bundle the first stage verified
	Disks       []string           `json:"disks"`        // written
	Resume      string             `json:"resume"`       // direct or kexec
	ResumeArgs  []string           `json:"resume_args,omitempty"`
	Stage1      map[string]float64 `json:"stage1_seconds"`
	// Payload is what goes into the image's mailbox: the device plan and
	// its modules, made by stage 1 against this machine.
	Payload []byte `json:"payload,omitempty"`
	// Release are the PCI devices the image kernel drives afresh (moved
	// disks' controllers, rebound NICs): a direct restore unbinds them
	// from this kernel first.
	Release []string `json:"release,omitempty"`
	// Arm is the resume image's header page that stage 1 wrote,
	// verified and then held back: stage 2 writes it once the source's
	// memory map and firmware ranges are in place, just before the image
	// kernel takes over. Until then a power cut leaves nothing that a
	// kernel booted on this machine's own memory map would resume.
	Arm *Arm `json:"arm,omitempty"`
}

// Arm is a hibernation header page and where it goes.
type Arm struct {
	Path   string `json:"path"`   // the disk or partition device
	Offset int64  `json:"offset"` // byte offset of the page in Path
	Page   []byte `json:"page"`   // the page with its hibernation signature
}

// Load reads the State; an absent file is an error naming it.
func Load(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("stage 2: %w (was the agent kexec'd by a first stage?)", err)
	}
	s, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("stage 2: %s: %w", path, err)
	}
	return s, nil
}

// Marshal encodes a State as Parse reads it.
func Marshal(s *State) ([]byte, error) { return json.MarshalIndent(s, "", "  ") }

// Parse decodes a State as Load reads it.
func Parse(b []byte) (*State, error) {
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Skip are the directories whose contents Pack leaves out (kept as empty
// mount points): kernel file systems and scratch space. Everything else
// goes in, mounted or not (u-root's init bind-mounts a tmpfs copy of /etc
// over /etc).
var Skip = []string{"proc", "sys", "dev", "tmp", "run"}

// Pack writes a newc archive of the tree at root to w: every file except
// those under Skip, plus the extra files given (path → contents), which
// replace files of the same name.
func Pack(w io.Writer, root string, extra map[string][]byte) error {
	skip := map[string]bool{}
	for _, d := range Skip {
		skip[d] = true
	}
	rw := cpio.Newc.Writer(w)
	rec := cpio.NewRecorder()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		if _, ok := extra["/"+rel]; ok {
			return nil
		}
		if skip[rel] && d.IsDir() {
			return errSkipWith(rw, rel, fs.SkipDir)
		}
		r, err := rec.GetRecord(p)
		if err != nil {
			return fmt.Errorf("stage 2 pack %s: %w", p, err)
		}
		r.Name = rel
		if err := rw.WriteRecord(r); err != nil {
			return fmt.Errorf("stage 2 pack %s: %w", p, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	names := make([]string, 0, len(extra))
	for name := range extra {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := rw.WriteRecord(cpio.StaticFile(filepath.Clean(name)[1:], string(extra[name]), 0o644)); err != nil {
			return err
		}
	}
	return cpio.WriteTrailer(rw)
}

func errSkipWith(rw cpio.RecordWriter, rel string, skip error) error {
	if err := rw.WriteRecord(cpio.Directory(rel, 0o755)); err != nil {
		return err
	}
	return skip
}
