/* Byte planes of zoostore's zstd-bytegroup4 frames (zoostore.storage.planes): the split of a
 * chunk into 4 planes and their interleave back, in C and without the GIL. The pure-Python
 * slices in planes.py do the same (and are the reference the tests compare with). Also a
 * bytearray that is not zero-filled, for read buffers (zoostore.storage.segments). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static void split(const unsigned char *s, Py_ssize_t n, unsigned char *d) {
    Py_ssize_t q = n / 4;
    unsigned char *p0 = d, *p1 = p0 + (n + 3) / 4, *p2 = p1 + (n + 2) / 4, *p3 = p2 + (n + 1) / 4;
    for (Py_ssize_t k = 0; k < q; k++) {
        p0[k] = s[4 * k];
        p1[k] = s[4 * k + 1];
        p2[k] = s[4 * k + 2];
        p3[k] = s[4 * k + 3];
    }
    for (Py_ssize_t i = 4 * q; i < n; i++) {
        unsigned char *p = i % 4 == 0 ? p0 : i % 4 == 1 ? p1 : p2;
        p[q] = s[i];
    }
}

static void interleave(const unsigned char *s, Py_ssize_t n, unsigned char *d) {
    Py_ssize_t q = n / 4;
    const unsigned char *p0 = s, *p1 = p0 + (n + 3) / 4, *p2 = p1 + (n + 2) / 4, *p3 = p2 + (n + 1) / 4;
    for (Py_ssize_t k = 0; k < q; k++) {
        d[4 * k] = p0[k];
        d[4 * k + 1] = p1[k];
        d[4 * k + 2] = p2[k];
        d[4 * k + 3] = p3[k];
    }
    for (Py_ssize_t i = 4 * q; i < n; i++) {
        const unsigned char *p = i % 4 == 0 ? p0 : i % 4 == 1 ? p1 : p2;
        d[i] = p[q];
    }
}

/* split4(chunk) -> bytes: the 4 planes concatenated (plane i holds ceil((n - i) / 4) bytes). */
static PyObject *split4(PyObject *self, PyObject *arg) {
    Py_buffer in;
    if (PyObject_GetBuffer(arg, &in, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *out = PyBytes_FromStringAndSize(NULL, in.len);
    if (out != NULL) {
        unsigned char *d = (unsigned char *)PyBytes_AS_STRING(out);
        Py_BEGIN_ALLOW_THREADS
        split((const unsigned char *)in.buf, in.len, d);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&in);
    return out;
}

/* interleave4(planes, out, offset): planes (as split4 makes them) interleaved into
 * out[offset : offset + len(planes)]. */
static PyObject *interleave4(PyObject *self, PyObject *args) {
    Py_buffer in, out;
    Py_ssize_t offset;
    if (!PyArg_ParseTuple(args, "y*w*n:interleave4", &in, &out, &offset))
        return NULL;
    PyObject *result = NULL;
    if (offset < 0 || offset > out.len || in.len > out.len - offset) {
        PyErr_Format(PyExc_ValueError, "interleave4: %zd bytes do not fit at offset %zd of %zd",
                     in.len, offset, out.len);
    } else {
        Py_BEGIN_ALLOW_THREADS
        interleave((const unsigned char *)in.buf, in.len, (unsigned char *)out.buf + offset);
        Py_END_ALLOW_THREADS
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&in);
    PyBuffer_Release(&out);
    return result;
}

/* empty(n) -> bytearray of n bytes that are not zero-filled: Python's bytearray(n) writes n
 * zeros while holding the GIL (page-faulting every new page on the way), which a read buffer
 * about to be overwritten does not need. Its pages are faulted in by whoever writes them first,
 * a read or a decoder, without the GIL. */
static PyObject *empty(PyObject *self, PyObject *arg) {
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "empty: negative size");
        return NULL;
    }
    return PyByteArray_FromStringAndSize(NULL, n);
}

static PyMethodDef methods[] = {
    {"empty", empty, METH_O, "A bytearray of n bytes, not zero-filled."},
    {"split4", split4, METH_O, "The 4 byte planes of a chunk, concatenated."},
    {"interleave4", interleave4, METH_VARARGS, "Interleave 4 concatenated byte planes into a buffer."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "zoostore.storage._planes", NULL, -1, methods};

PyMODINIT_FUNC PyInit__planes(void) { return PyModule_Create(&module); }
