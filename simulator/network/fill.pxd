# Augmenting declarations for fill.py (the optional compiled build: simulator/compiled.py): the
# filling on C doubles. The loop bounds keep every index in range, so fill.py's header turns Cython's bounds
# and negative-index checks off; cdivision stays off (the loop tests a slope before dividing by it).
cimport cython

cpdef list fill(list demand, per_grant, capacity, double keep)

cdef class Filling:
    cdef public Py_ssize_t links, flows, size
    cdef double[::1] cap, slope, used, dem, granted, val
    cdef signed char[::1] full, active
    cdef long long[::1] start, at, by_demand

    cpdef _room(self, Py_ssize_t n, Py_ssize_t size)
    @cython.locals(n=Py_ssize_t, links=Py_ssize_t, rows="const double[:, ::1]", start="long long[::1]",
                   at="long long[::1]", val="double[::1]", k=Py_ssize_t, f=Py_ssize_t, j=Py_ssize_t)
    cpdef list dense(self, list demand, per_grant, double keep)
    @cython.locals(n=Py_ssize_t, size=Py_ssize_t, start="long long[::1]", at="long long[::1]", val="double[::1]",
                   k=Py_ssize_t, f=Py_ssize_t, i=Py_ssize_t, row_cols=list, row_vals=list, v=double)
    cpdef list rows(self, list demand, list cols, list vals, double keep)
    @cython.locals(n=Py_ssize_t, links=Py_ssize_t, cap="double[::1]", slope="double[::1]", used="double[::1]",
                   full="signed char[::1]", start="long long[::1]", at="long long[::1]", val="double[::1]",
                   dem="double[::1]", active="signed char[::1]", granted="double[::1]", k=Py_ssize_t,
                   by_demand="long long[::1]", first=Py_ssize_t, left=Py_ssize_t, level=double, step=double, room=double,
                   filled=bint, frozen=Py_ssize_t, i=Py_ssize_t, f=Py_ssize_t, j=Py_ssize_t)
    cdef list _run(self, list demand, double keep)
