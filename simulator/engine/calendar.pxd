# Augmenting declarations for calendar.py (the optional compiled build: simulator/compiled.py).
cimport cython

cdef class Due:
    cdef public object callbacks, _value

cdef class Calendar:
    cdef public object env
    cdef public list queue
    cdef public object ids

    @cython.locals(queue=list, entry=tuple)
    cpdef run(self, job_type, on_completion, double until=*)
    cpdef double next_time(self)
