/* The compiled fast path of the label-list reader (mlimages.data.labels.fast, .table): a byte
 * scanner for ML-Images label lists and the key-kind classifier. A C extension rather than numba
 * because a label list is read once per process: numba's import and cache load would be paid by
 * every process, while this loads at once.
 *
 * scan_lines accepts exactly what parse.parse_slow accepts, except exponents and
 * confidences with more than 15 significant or 22 fractional digits, which it hands over
 * (status 1) like every malformed line, so that the reference parser stays the only source of
 * error messages. Both functions release the GIL: read_label_list runs slices in threads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static double pow10_exact[23]; /* 10**0 .. 10**22: every one an exact double */

static inline int is_space(uint8_t c) { return c == 32 || (c >= 9 && c <= 13); }

static int cmp_int32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Whether indices[0:n] (row number row) lists a class twice. With stamps (one per class, the
 * last row + 1 that listed it) a label costs one look-up; without (too many classes), sort is
 * scratch of at least n values. */
static int has_duplicate(const int32_t *indices, Py_ssize_t n, int32_t *sort, int32_t *stamps,
                         int32_t row) {
    if (stamps != NULL) {
        int duplicate = 0;
        for (Py_ssize_t a = 0; a < n; a++) {
            duplicate |= stamps[indices[a]] == row + 1;
            stamps[indices[a]] = row + 1;
        }
        return duplicate;
    }
    if (n <= 32) {
        for (Py_ssize_t a = 1; a < n; a++)
            for (Py_ssize_t b = 0; b < a; b++)
                if (indices[a] == indices[b]) return 1;
        return 0;
    }
    memcpy(sort, indices, (size_t)n * sizeof(int32_t));
    qsort(sort, (size_t)n, sizeof(int32_t), cmp_int32);
    for (Py_ssize_t a = 1; a < n; a++)
        if (sort[a] == sort[a - 1]) return 1;
    return 0;
}

typedef struct {
    Py_ssize_t rows, key_bytes, labels;
    int unique, high;
} scan_result;

/* Parse buf[start:stop] (whole lines, buf[stop - 1] a newline, len bytes readable); 0 on
 * success, 1 "not sure". */
static int scan(const uint8_t *buf, Py_ssize_t len, Py_ssize_t start, Py_ssize_t stop, int64_t top,
                uint8_t *keys, int64_t *key_lengths, int64_t *counts, int32_t *indices,
                float *confidences, int32_t *sort, int32_t *stamps, scan_result *r) {
    Py_ssize_t i = start, rows = 0, n_key = 0, n_lab = 0;
    int unique = 1, high = 0;
    int status = 0;
    while (i < stop) {
        uint8_t c = buf[i];
        if (is_space(c)) { /* a blank line, or an error for the slow path */
            while (c != 10) {
                if (!is_space(c)) { status = 1; goto done; }
                c = buf[++i];
            }
            i++;
            continue;
        }
        Py_ssize_t k0 = i;
        /* Eight key bytes at a time while none is below 33 (all whitespace is): half the
         * input is keys. The word may reach past stop, never past the buffer (readable). */
        uint64_t word, seen = 0;
        while (i + 8 <= len) {
            memcpy(&word, buf + i, 8);
            if ((word - 0x2121212121212121ULL) & ~word & 0x8080808080808080ULL) break;
            seen |= word;
            i += 8;
        }
        if (seen & 0x8080808080808080ULL) high |= 0x80;
        c = buf[i];
        while (!is_space(c)) {
            high |= c;
            c = buf[++i];
        }
        memcpy(keys + n_key, buf + k0, (size_t)(i - k0));
        n_key += i - k0;
        key_lengths[rows] = i - k0;
        Py_ssize_t row0 = n_lab;
        while (c != 10) {
            if (is_space(c)) {
                c = buf[++i];
                continue;
            }
            int64_t value = 0;
            int digits = 0;
            while (c >= 48 && c <= 57) {
                value = value * 10 + (c - 48);
                if (value > top) { status = 1; goto done; }
                digits++;
                c = buf[++i];
            }
            if (digits == 0) { status = 1; goto done; }
            double conf = 1.0;
            if (c == 58) { /* ":" */
                c = buf[++i];
                uint64_t mantissa = 0;
                int significant = 0, fraction = 0, dot = 0;
                digits = 0;
                for (;;) {
                    if (c >= 48 && c <= 57) {
                        if (mantissa || c != 48) significant++;
                        mantissa = mantissa * 10 + (uint64_t)(c - 48);
                        digits++;
                        if (dot) fraction++;
                    } else if (c == 46 && !dot) {
                        dot = 1;
                    } else {
                        break;
                    }
                    c = buf[++i];
                }
                if (digits == 0 || significant > 15 || fraction > 22) { status = 1; goto done; }
                /* mantissa < 2**53 and 10**fraction are exact: rounds like float(text) */
                conf = (double)mantissa / pow10_exact[fraction];
                if (conf > 1.0) { status = 1; goto done; }
            }
            if (!is_space(c)) { status = 1; goto done; }
            indices[n_lab] = (int32_t)value;
            confidences[n_lab] = (float)conf;
            n_lab++;
        }
        i++;
        counts[rows] = n_lab - row0;
        rows++;
        if (unique && n_lab - row0 > 1 &&
            has_duplicate(indices + row0, n_lab - row0, sort, stamps, (int32_t)rows))
            unique = 0;
    }
done:
    r->rows = rows;
    r->key_bytes = n_key;
    r->labels = n_lab;
    r->unique = unique;
    r->high = high;
    return status;
}

static int get_buffer(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t itemsize,
                      const char *name) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    if (view->itemsize != itemsize) {
        PyErr_Format(PyExc_TypeError, "%s: expected items of %zd bytes, got %zd", name, itemsize,
                     view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

#define N_OUT 5
#define STAMPED_CLASSES (1 << 20) /* up to 4 MiB of stamps a slice; ML-Images has 11,166 */

static PyObject *scan_lines(PyObject *self, PyObject *args) {
    PyObject *buf_obj, *out_obj[N_OUT];
    Py_ssize_t start, stop;
    long long top;
    if (!PyArg_ParseTuple(args, "OnnLOOOOO", &buf_obj, &start, &stop, &top, &out_obj[0],
                          &out_obj[1], &out_obj[2], &out_obj[3], &out_obj[4]))
        return NULL;
    static const Py_ssize_t sizes[N_OUT] = {1, 8, 8, 4, 4};
    static const char *names[N_OUT] = {"keys", "key_lengths", "counts", "indices",
                                       "confidences"};
    Py_buffer buf, out[N_OUT];
    if (get_buffer(buf_obj, &buf, 0, 1, "buf") < 0) return NULL;
    int got = 0;
    for (; got < N_OUT; got++)
        if (get_buffer(out_obj[got], &out[got], 1, sizes[got], names[got]) < 0) break;
    PyObject *result = NULL;
    int32_t *sort = NULL, *stamps = NULL;
    if (got < N_OUT) goto release;
    Py_ssize_t n = stop - start;
    /* a key takes at least one byte and a row or a label at least two */
    if (start < 0 || n < 1 || stop > buf.len || ((const uint8_t *)buf.buf)[stop - 1] != 10) {
        PyErr_SetString(PyExc_ValueError, "buf[start:stop] must be whole lines, ending in \\n");
        goto release;
    }
    if (out[0].len < n || out[1].len / 8 < n / 2 + 1 || out[2].len / 8 < n / 2 + 1 ||
        out[3].len / 4 < n / 2 + 1 || out[4].len / 4 < n / 2 + 1) {
        PyErr_SetString(PyExc_ValueError, "output buffers are too small for the slice");
        goto release;
    }
    if (top < STAMPED_CLASSES) /* one stamp a class, or scratch for sorting a long row */
        stamps = PyMem_RawCalloc((size_t)top + 1, sizeof(int32_t));
    else
        sort = PyMem_RawMalloc((size_t)(n / 2 + 1) * sizeof(int32_t));
    if (sort == NULL && stamps == NULL) {
        PyErr_NoMemory();
        goto release;
    }
    scan_result r;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = scan((const uint8_t *)buf.buf, buf.len, start, stop, (int64_t)top, out[0].buf, out[1].buf,
                  out[2].buf, out[3].buf, out[4].buf, sort, stamps, &r);
    Py_END_ALLOW_THREADS
    result = Py_BuildValue("(innnOO)", status, r.rows, r.key_bytes, r.labels,
                           r.unique ? Py_True : Py_False, r.high < 128 ? Py_True : Py_False);
release:
    PyMem_RawFree(sort);
    PyMem_RawFree(stamps);
    PyBuffer_Release(&buf);
    for (int k = 0; k < got; k++) PyBuffer_Release(&out[k]);
    return result;
}

/* LabelTable._kind_codes key by key: 1 for a URL, 2 for an ImageNet id, else 0. */
static void kind_codes(const uint8_t *key_bytes, const int64_t *key_offsets, int8_t *codes,
                       Py_ssize_t n_rows) {
    uint8_t head[18];
    for (Py_ssize_t r = 0; r < n_rows; r++) {
        int64_t a = key_offsets[r], n = key_offsets[r + 1] - a;
        memset(head, 0, sizeof head); /* a key's first 16 bytes, zero past its end */
        memcpy(head, key_bytes + a, (size_t)(n < 16 ? n : 16));
        uint8_t lower = head[0] | 0x20;
        if (lower >= 97 && lower <= 122) { /* a letter, then a scheme up to the first other */
            int q = 1;
            for (; q < 16; q++) {
                uint8_t c = head[q];
                lower = c | 0x20;
                if (!((lower >= 97 && lower <= 122) || (c >= 48 && c <= 57) || c == 43 ||
                      c == 45 || c == 46))
                    break;
            }
            if (q <= 13 && head[q] == 58 && head[q + 1] == 47 && head[q + 2] == 47) {
                codes[r] = 1;
                continue;
            }
        }
        if (n >= 11 && head[0] == 110 && head[9] == 47) { /* "n", 8 digits, "/", a name */
            int ok = 1;
            for (int j = 1; j < 9; j++)
                if (head[j] < 48 || head[j] > 57) ok = 0;
            if (ok && memchr(key_bytes + a + 10, 47, (size_t)(n - 10)) != NULL) ok = 0;
            if (ok) codes[r] = 2;
        }
    }
}

static PyObject *key_kind_codes(PyObject *self, PyObject *args) {
    PyObject *key_obj, *offset_obj, *code_obj;
    if (!PyArg_ParseTuple(args, "OOO", &key_obj, &offset_obj, &code_obj)) return NULL;
    Py_buffer keys, offsets, codes;
    if (get_buffer(key_obj, &keys, 0, 1, "key_bytes") < 0) return NULL;
    if (get_buffer(offset_obj, &offsets, 0, 8, "key_offsets") < 0) {
        PyBuffer_Release(&keys);
        return NULL;
    }
    if (get_buffer(code_obj, &codes, 1, 1, "codes") < 0) {
        PyBuffer_Release(&keys);
        PyBuffer_Release(&offsets);
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t n_rows = codes.len;
    const int64_t *off = offsets.buf;
    if (offsets.len / 8 != n_rows + 1 || (n_rows && (off[0] < 0 || off[n_rows] > keys.len))) {
        PyErr_SetString(PyExc_ValueError, "key_offsets must hold len(codes) + 1 offsets into "
                                          "key_bytes");
    } else {
        Py_BEGIN_ALLOW_THREADS
        kind_codes(keys.buf, off, codes.buf, n_rows);
        Py_END_ALLOW_THREADS
        result = Py_NewRef(code_obj);
    }
    PyBuffer_Release(&keys);
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&codes);
    return result;
}

static PyMethodDef methods[] = {
    {"scan_lines", scan_lines, METH_VARARGS,
     "scan_lines(buf, start, stop, top, keys, key_lengths, counts, indices, confidences) -> "
     "(status, rows, key bytes, labels, unique rows, keys all ASCII)"},
    {"key_kind_codes", key_kind_codes, METH_VARARGS,
     "key_kind_codes(key_bytes, key_offsets, codes) -> codes (1 URL, 2 ImageNet id, 0 other)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_labelscan", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__labelscan(void) {
    double p = 1.0;
    for (int k = 0; k < 23; k++, p *= 10.0) pow10_exact[k] = p;
    return PyModule_Create(&module);
}
