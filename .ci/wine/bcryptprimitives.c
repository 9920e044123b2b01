/* Wine before 9 has no bcryptprimitives.dll, whose ProcessPrng Rust's std
 * (1.78 and later) draws random bytes from on Windows. This stand-in
 * forwards to BCryptGenRandom, which Wine has. Windows itself (8 and
 * later) ships the real DLL: this is a Wine-only shim for CI. */
#include <windows.h>
#include <bcrypt.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG n = len > 0x7fffffff ? 0x7fffffff : (ULONG)len;
        if (BCryptGenRandom(NULL, data, n, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0)
            return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
