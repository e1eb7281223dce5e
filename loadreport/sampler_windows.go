package loadreport

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/windows"
)

// x/sys/windows wraps neither GetSystemTimes nor GlobalMemoryStatusEx.
var (
	kernel32                 = windows.NewLazySystemDLL("kernel32.dll")
	procGetSystemTimes       = kernel32.NewProc("GetSystemTimes")
	procGlobalMemoryStatusEx = kernel32.NewProc("GlobalMemoryStatusEx")
)

// memoryStatusEx is MEMORYSTATUSEX.
type memoryStatusEx struct {
	length               uint32
	memoryLoad           uint32
	totalPhys            uint64
	availPhys            uint64
	totalPageFile        uint64
	availPageFile        uint64
	totalVirtual         uint64
	availVirtual         uint64
	availExtendedVirtual uint64
}

// systemMachine asks kernel32: GetSystemTimes for CPU (kernel time includes
// idle time, so busy is kernel + user - idle) and GlobalMemoryStatusEx for
// physical memory (in use is total minus available).
func systemMachine() machine {
	return machine{
		cpuTimes: func() (cpuTimes, error) {
			var idle, kernel, user windows.Filetime
			ok, _, err := procGetSystemTimes.Call(
				uintptr(unsafe.Pointer(&idle)),
				uintptr(unsafe.Pointer(&kernel)),
				uintptr(unsafe.Pointer(&user)))
			if ok == 0 {
				return cpuTimes{}, fmt.Errorf("GetSystemTimes: %w", err)
			}
			total := filetimeTicks(kernel) + filetimeTicks(user)
			return cpuTimes{busy: total - min(filetimeTicks(idle), total), total: total}, nil
		},
		memoryPercent: func() (float64, error) {
			status := memoryStatusEx{length: uint32(unsafe.Sizeof(memoryStatusEx{}))}
			ok, _, err := procGlobalMemoryStatusEx.Call(uintptr(unsafe.Pointer(&status)))
			if ok == 0 {
				return 0, fmt.Errorf("GlobalMemoryStatusEx: %w", err)
			}
			if status.totalPhys == 0 {
				return 0, fmt.Errorf("GlobalMemoryStatusEx: no physical memory")
			}
			avail := min(status.availPhys, status.totalPhys)
			return float64(status.totalPhys-avail) / float64(status.totalPhys) * 100, nil
		},
	}
}

// filetimeTicks is a FILETIME duration in 100 ns units.
func filetimeTicks(ft windows.Filetime) uint64 {
	return uint64(ft.HighDateTime)<<32 | uint64(ft.LowDateTime)
}
