package physmem

import (
	"encoding/binary"
	"fmt"
)

// FADTPointers reads where the DSDT and the FACS lie from a FADT (the
// table signed FACP, as /sys/firmware/acpi/tables/FACP holds it): the
// 64-bit X_DSDT and X_FIRMWARE_CTRL when the table reaches them and they
// are set, else the 32-bit DSDT and FIRMWARE_CTRL. An address is 0 when
// the table names none.
//
// On a machine booted by UEFI the tables lie in ranges typed ACPI (3, 4)
// that the kernel claims, and /dev/mem refuses to map them; the tables
// themselves are readable under /sys/firmware/acpi/tables, and the FADT
// says where the DSDT, whose AML the running kernel executes in place,
// lives.
func FADTPointers(facp []byte) (dsdt, facs uint64, err error) {
	le := binary.LittleEndian
	if len(facp) < 44 || string(facp[:4]) != "FACP" {
		return 0, 0, fmt.Errorf("physmem: FADT: %d bytes, signature %q: not a FADT", len(facp), string(facp[:min(4, len(facp))]))
	}
	if n := le.Uint32(facp[4:]); int(n) != len(facp) {
		return 0, 0, fmt.Errorf("physmem: FADT: header length %d at offset 4, table %d bytes", n, len(facp))
	}
	facs, dsdt = uint64(le.Uint32(facp[36:])), uint64(le.Uint32(facp[40:]))
	if len(facp) >= 140 {
		if x := le.Uint64(facp[132:]); x != 0 {
			facs = x
		}
	}
	if len(facp) >= 148 {
		if x := le.Uint64(facp[140:]); x != 0 {
			dsdt = x
		}
	}
	return dsdt, facs, nil
}

// TableLength is the length an ACPI table's header (at offset 4) gives,
// checked against the bytes read.
func TableLength(sig string, b []byte) (uint64, error) {
	if len(b) < 36 || string(b[:4]) != sig {
		return 0, fmt.Errorf("physmem: %s: %d bytes: not an ACPI table signed %s", sig, len(b), sig)
	}
	n := binary.LittleEndian.Uint32(b[4:])
	if int(n) != len(b) {
		return 0, fmt.Errorf("physmem: %s: header length %d at offset 4, table %d bytes", sig, n, len(b))
	}
	return uint64(n), nil
}
