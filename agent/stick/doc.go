// Package stick finds and mounts the recovery stick that thaw media usb
// writes: a GPT disk whose EFI system partition (named THAW-ESP) boots the
// agent and whose data partition (named THAWDATA, a FAT32 filesystem with
// the same label) holds bundles. The agent mounts the data partition
// read-only; the one write it ever makes there is a log file under
// thaw-logs/, through WriteLog.
package stick
