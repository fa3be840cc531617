"""LAPACK calls that release the GIL, bit-identical to their ``scipy.linalg`` counterparts.

``scipy.linalg`` and ``numpy.linalg`` hold the GIL for the whole of a factorisation, so a
second Python thread cannot run while one computes (numpy issue #7179). This module calls the
same routines of the same library, scipy's LAPACK, through the table of C function pointers
scipy publishes for Cython (``scipy.linalg.cython_lapack``) and ``ctypes``, which drops the
GIL for the duration of a foreign call. The greedy walk uses it to screen the next step
while the exact distance of this one is computed on a second core
(:func:`oodml.splits.procedures.greedy_walk`).

Same routine, same input in the same (Fortran) layout, same workspace size as scipy queries:
the results are bit-identical to ``scipy.linalg.svdvals`` and ``scipy.linalg.cholesky``
(``tests/test_lapack.py``). If the table cannot be read (another scipy build), both fall back
to scipy itself.
"""

from __future__ import annotations

import ctypes
from functools import cache, lru_cache

import numpy as np
import scipy.linalg as sla

_INT = ctypes.c_int
_PINT = ctypes.POINTER(ctypes.c_int)
_PDOUBLE = ctypes.POINTER(ctypes.c_double)
_CHAR = ctypes.c_char_p
_C_NAMES = {_CHAR: "char *", _PINT: "int *", _PDOUBLE: "double *"}


_GET_NAME = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.py_object)(
    ("PyCapsule_GetName", ctypes.pythonapi))
_GET_POINTER = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", ctypes.pythonapi))


@cache
def _routine(name: str, *argtypes) -> ctypes._CFuncPtr | None:
    """scipy's LAPACK (or BLAS) routine ``name`` as a GIL-releasing ctypes function, or None
    when it is missing or its C signature is not the one ``argtypes`` describe (32-bit
    ``int *`` integers; a 64-bit-integer build is not called)."""
    try:
        from scipy.linalg import cython_blas, cython_lapack

        table = cython_lapack if name in cython_lapack.__pyx_capi__ else cython_blas
        capsule = table.__pyx_capi__[name]
        signature = _GET_NAME(capsule)
        pointer = _GET_POINTER(capsule, signature)
    except (ImportError, AttributeError, KeyError, ValueError):
        return None
    if not pointer or not signature or _arguments(signature.decode()) != [
        _C_NAMES[t] for t in argtypes
    ]:
        return None
    return ctypes.CFUNCTYPE(None, *argtypes)(pointer)


def _arguments(signature: str) -> list[str]:
    """The argument kinds of a capsule's C signature, e.g. "void (char *, int *, ...)"."""
    inside = signature[signature.find("(") + 1 : signature.rfind(")")]
    kinds = []
    for arg in inside.split(","):
        arg = arg.strip()
        kinds.append("double *" if arg.endswith("_d *") else arg)
    return kinds


def _dgesdd():
    return _routine("dgesdd", _CHAR, _PINT, _PINT, _PDOUBLE, _PINT, _PDOUBLE, _PDOUBLE, _PINT,
                    _PDOUBLE, _PINT, _PDOUBLE, _PINT, _PINT, _PINT)


def _dpotrf():
    return _routine("dpotrf", _CHAR, _PINT, _PDOUBLE, _PINT, _PINT)


def _dsyrk():
    return _routine("dsyrk", _CHAR, _CHAR, _PINT, _PINT, _PDOUBLE, _PDOUBLE, _PINT, _PDOUBLE,
                    _PDOUBLE, _PINT)


def _dtrmm():
    return _routine("dtrmm", _CHAR, _CHAR, _CHAR, _CHAR, _PINT, _PINT, _PDOUBLE, _PDOUBLE, _PINT,
                    _PDOUBLE, _PINT)


def _val(value: float) -> ctypes._Pointer:
    return ctypes.byref(ctypes.c_double(value))


def _ref(value: int) -> ctypes._Pointer:
    return ctypes.byref(_INT(value))


def _ptr(a: np.ndarray) -> ctypes._Pointer:
    return a.ctypes.data_as(_PDOUBLE)


def svdvals(a: np.ndarray, overwrite: bool = False) -> np.ndarray:
    """Singular values of a finite matrix, descending: ``scipy.linalg.svdvals`` bit for bit,
    through ``dgesdd`` without the GIL for float64 input (anything else goes to scipy);
    ``a`` is copied unless ``overwrite`` is set and it is a writeable Fortran-ordered array."""
    fn = _dgesdd()
    given = np.asarray(a)
    if fn is None or given.dtype != np.float64 or given.ndim != 2 or given.size == 0:
        return sla.svdvals(given, check_finite=False)
    keep = overwrite and given.flags.f_contiguous and given.flags.writeable
    a = given if keep else np.array(given, order="F", copy=True)
    m, n = a.shape
    k = min(m, n)
    s = np.empty(k)
    dummy = np.zeros(1)
    iwork = np.empty(8 * k, dtype=np.intc)
    info = _INT(0)

    def call(work: np.ndarray, lwork: int) -> None:
        fn(b"N", _ref(m), _ref(n), _ptr(a), _ref(m), _ptr(s), _ptr(dummy), _ref(1), _ptr(dummy),
           _ref(1), _ptr(work), _ref(lwork), iwork.ctypes.data_as(_PINT), ctypes.byref(info))

    query = np.zeros(1)
    call(query, -1)
    call(np.empty(max(int(query[0]), 1)), max(int(query[0]), 1))
    if info.value > 0:
        raise np.linalg.LinAlgError("SVD did not converge")
    if info.value < 0:
        raise ValueError(f"illegal value in argument {-info.value} of dgesdd")
    return s


def cholesky_lower(a: np.ndarray) -> np.ndarray:
    """The lower Cholesky factor L (upper triangle zeroed) of a symmetric positive definite
    matrix, of which only the lower triangle is read: ``scipy.linalg.cholesky(a, lower=True)``
    bit for bit, through ``dpotrf`` without the GIL for float64 input (anything else goes to
    scipy); raises ``numpy.linalg.LinAlgError`` when it is not positive definite."""
    fn = _dpotrf()
    if fn is None or np.asarray(a).dtype != np.float64:
        return sla.cholesky(a, lower=True, check_finite=False)
    c = np.array(a, dtype=np.float64, order="F", copy=True)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"expected a square matrix, got shape {c.shape}")
    n = c.shape[0]
    info = _factor_lower(fn, c) if n else 0
    if info > 0:
        raise np.linalg.LinAlgError(
            f"{info}-th leading minor of the array is not positive definite")
    if info < 0:
        raise ValueError(f"illegal value in argument {-info} of dpotrf")
    c[_strictly_upper(n)] = 0.0
    return c


def _factor_lower(potrf, c: np.ndarray) -> int:
    """``dpotrf`` on the lower triangle of the square Fortran-ordered ``c``, in place; its
    info (0: done, k > 0: the k-th leading minor is not positive definite)."""
    n = c.shape[0]
    info = _INT(0)
    potrf(b"L", _ref(n), _ptr(c), _ref(n), ctypes.byref(info))
    return info.value


@lru_cache(maxsize=8)
def _strictly_upper(n: int) -> np.ndarray:
    return np.triu(np.ones((n, n), dtype=bool), 1)


def gram_cholesky(a: np.ndarray, eps: float) -> np.ndarray | None:
    """The lower Cholesky factor (Fortran order, upper triangle zero) of A A^T + eps I for a
    float64 d x n matrix A, from one rank-n update (``dsyrk``, which fills only the lower
    triangle, so the matrix is symmetric by construction) and ``dpotrf``, without the GIL;
    None when that matrix is not numerically positive definite or the routines are not
    available (callers then take their general route)."""
    syrk, potrf = _dsyrk(), _dpotrf()
    if syrk is None or potrf is None:
        return None
    a = np.asfortranarray(a, dtype=np.float64)
    d, n = a.shape
    c = np.zeros((d, d), order="F")
    if d == 0:
        return c
    syrk(b"L", b"N", _ref(d), _ref(n), _val(1.0), _ptr(a), _ref(d), _val(0.0), _ptr(c), _ref(d))
    c.flat[:: d + 1] += eps
    if _factor_lower(potrf, c) != 0 or not np.isfinite(c).all():
        return None
    return c


def triangular_product_svdvals(lower1: np.ndarray, lower2: np.ndarray) -> np.ndarray:
    """Singular values of L1^T L2 for lower triangular d x d factors (Fortran order, upper
    triangles zero, as :func:`gram_cholesky` returns them): one triangular multiply
    (``dtrmm``, half a general product's flops) and ``dgesdd``, without the GIL."""
    trmm = _dtrmm()
    d = lower1.shape[0]
    if trmm is None or d == 0:
        return sla.svdvals(lower1.T @ lower2, check_finite=False) if d else np.zeros(0)
    product = np.array(lower2, dtype=np.float64, order="F", copy=True)
    left = np.asfortranarray(lower1, dtype=np.float64)
    trmm(b"L", b"L", b"T", b"N", _ref(d), _ref(d), _val(1.0), _ptr(left), _ref(d),
         _ptr(product), _ref(d))
    return svdvals(product, overwrite=True)
