# Augmenting declarations for calendar.py (the optional compiled build: simulator/compiled.py).
cimport cython

cdef class Due:
    cdef public object callbacks, _value

cdef class Calendar:
    cdef public object env
    cdef public list queue
    cdef public object ids
    cdef public long long stall_events, _still
    cdef public double _still_at

    @cython.locals(queue=list, entry=tuple, left=long)
    cpdef run(self, job_type, on_completion, double until=*)
    cpdef double next_time(self)
    cpdef Due at(self, time, handler, value=*)
    cpdef completion_at(self, time, obj)
