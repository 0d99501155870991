package restore

import (
	"context"
	"slices"
	"time"

	"github.com/thawlinux/thaw/netfetch/bootparam"
)

// Stages is the pipeline, in order. Each stage runs when its When says so
// for the command and the state; see the package documentation.
func Stages() []Stage {
	return []Stage{
		{"params", agentOnly, params},
		{"drivers", agentOnly, drivers},
		{"stick", needsStick, mountStick},
		{"dhcp", agentOnly, network},
		{"image", nil, openImage},
		{"signature", nil, signature},
		{"stage2", secondStage, loadStage2},
		{"firmware", secondStage, firmware},
		{"arm", arms, armResume},
		{"probe", needsProbe, probeMachine},
		{"plan", firstStage, makePlan},
		{"kernel", needsKernel, agentKernel},
		{"verify", verifiesFirst, verifyAll},
		{"write", writes, writeDisks},
		{"follow", follows, followCapture},
		{"area", writesArea, writeArea},
		{"handover", handsOver, handover},
	}
}

// Run takes one bundle through the stages. The State is returned even on
// error (what was written, the stages' times); Close it when done. A
// refusal is a *plan.Refused.
func Run(ctx context.Context, env Env, rep Reporter, cfg Config) (*State, error) {
	st := &State{Config: cfg, Times: map[string]float64{}}
	r := &run{env: env, rep: rep, st: st}
	stages := Stages()
	for i := 0; i < len(stages); i++ {
		s := stages[i]
		if s.When != nil && !s.When(r) {
			continue
		}
		t0 := time.Now()
		err := s.Do(ctx, r)
		name := s.Name
		if st.precopyPass() {
			name = "precopy." + name // the first pass of a follow
		}
		st.Times[name] += time.Since(t0).Seconds()
		if err != nil {
			return st, err
		}
		// The follow stage sends the pipeline back for the capture's
		// bundle.
		if r.again != "" {
			i = slices.IndexFunc(stages, func(s Stage) bool { return s.Name == r.again }) - 1
			r.again = ""
		}
	}
	return st, nil
}

func agentOnly(r *run) bool { return r.st.Mode == Agent }

func secondStage(r *run) bool { return r.st.Params != nil && r.st.Params.Stage == 2 }

func firstStage(r *run) bool { return !secondStage(r) }

// arms: stage 2 writes the resume header that stage 1 held back.
func arms(r *run) bool { return secondStage(r) && r.st.Stage2 != nil && r.st.Stage2.Arm != nil }

// needsProbe: the agent and thaw plan plan against this machine (or a
// saved profile); thaw restore only when it hands over directly.
func needsProbe(r *run) bool {
	switch {
	case secondStage(r):
		return false
	case r.st.Mode == Restore:
		return r.st.Direct
	}
	return true
}

// writes: everything after the plan, which thaw plan and a dry run never
// reach.
func writes(r *run) bool {
	return firstStage(r) && r.st.Mode != Plan && !r.st.DryRun
}

func verifiesFirst(r *run) bool { return writes(r) && r.st.verifyFirst() }

// follows: the first pass of a follow is written; the capture's bundle
// comes next.
func follows(r *run) bool { return writes(r) && r.st.precopyPass() }

func writesArea(r *run) bool {
	return writes(r) && !r.st.precopyPass() && (r.st.Path == PathKexec || r.st.Path == PathArea)
}

func handsOver(r *run) bool {
	switch {
	case secondStage(r):
		return true
	case !writes(r), r.st.precopyPass():
		return false
	}
	return r.st.Path == PathDirect || r.st.Path == PathKexec
}

// verifyFirst: every chunk is checked before the first write when asked,
// or (by default) when a target disk holds data: a tampered bundle never
// touches it.
func (s *State) verifyFirst() bool {
	switch s.Verify {
	case bootparam.VerifyFirst:
		return true
	case bootparam.VerifyStream:
		return false
	}
	if s.follow != nil && s.follow.final {
		// The disks hold the pre-copy, which this restore wrote (after
		// its own check, when they held data before): the capture's
		// bundle is checked as it is written, every chunk before the
		// image is resumed.
		return false
	}
	for _, d := range s.devs {
		if devHasData(d) {
			return true
		}
	}
	return false
}
