package harness

import (
	"bufio"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Screendump saves the VM's VGA screen as a PNG, scaled up scale times
// (OCR reads the 9×16 VGA font better larger). The VM must have VGA set.
func (vm *VM) Screendump(pngPath string, scale int) error {
	if vm.monPath == "" {
		return errors.New("harness: screendump needs VMConfig.VGA")
	}
	c, err := net.DialTimeout("unix", vm.monPath, 10*time.Second)
	if err != nil {
		return fmt.Errorf("harness: monitor: %w", err)
	}
	defer c.Close()
	ppm := pngPath + ".ppm"
	defer os.Remove(ppm)
	os.Remove(ppm)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintf(c, "screendump %s\n", ppm); err != nil {
		return err
	}
	// The monitor answers with a new prompt once the dump is written.
	var seen strings.Builder
	buf := make([]byte, 4096)
	for strings.Count(seen.String(), "(qemu)") < 2 {
		n, err := c.Read(buf)
		seen.Write(buf[:n])
		if err != nil {
			return fmt.Errorf("harness: monitor: %w (%q)", err, seen.String())
		}
	}
	f, err := os.Open(ppm)
	if err != nil {
		return fmt.Errorf("harness: screendump wrote nothing: %w", err)
	}
	defer f.Close()
	img, err := readPPM(bufio.NewReader(f), scale)
	if err != nil {
		return err
	}
	out, err := os.Create(pngPath)
	if err != nil {
		return err
	}
	if err := png.Encode(out, img); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// readPPM reads a binary PPM (P6, maxval 255), as QEMU's screendump
// writes it, scaled up by an integer factor.
func readPPM(r *bufio.Reader, scale int) (image.Image, error) {
	var magic string
	var w, h, max int
	if _, err := fmt.Fscan(r, &magic, &w, &h, &max); err != nil || magic != "P6" || max != 255 || w <= 0 || h <= 0 || w > 8192 || h > 8192 {
		return nil, fmt.Errorf("harness: not a P6 PPM screendump (%q %dx%d max %d): %v", magic, w, h, max, err)
	}
	if _, err := r.ReadByte(); err != nil {
		return nil, err
	}
	if scale < 1 {
		scale = 1
	}
	img := image.NewRGBA(image.Rect(0, 0, w*scale, h*scale))
	px := make([]byte, 3*w)
	for y := 0; y < h; y++ {
		if _, err := io.ReadFull(r, px); err != nil {
			return nil, fmt.Errorf("harness: screendump row %d: %w", y, err)
		}
		for x := 0; x < w; x++ {
			c := color.RGBA{px[3*x], px[3*x+1], px[3*x+2], 255}
			for dy := 0; dy < scale; dy++ {
				for dx := 0; dx < scale; dx++ {
					img.SetRGBA(x*scale+dx, y*scale+dy, c)
				}
			}
		}
	}
	return img, nil
}

// OCR reads the text in a picture with tesseract (Debian's tesseract-ocr).
func OCR(pngPath string) (string, error) {
	out, err := exec.Command("tesseract", pngPath, "stdout").Output()
	if err != nil {
		return "", fmt.Errorf("harness: tesseract %s (install tesseract-ocr): %w", pngPath, err)
	}
	return string(out), nil
}
