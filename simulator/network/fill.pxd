# Augmenting declarations for fill.py (the optional compiled build: simulator/compiled.py): the filling
# on C doubles. The loop bounds keep every index in range, so fill.py's header turns Cython's bounds
# and negative-index checks off; cdivision stays off (the loop tests a slope before dividing by it).
cimport cython

@cython.locals(n=Py_ssize_t, links=Py_ssize_t, rows="const double[:, ::1]", cap="const double[:]",
               start="long long[::1]", at="long long[::1]", val="double[::1]", k=Py_ssize_t,
               slope="double[::1]", used="double[::1]", full="signed char[::1]", active="signed char[::1]",
               granted="double[::1]", by_demand=list, first=Py_ssize_t, left=Py_ssize_t, level=double,
               step=double, room=double, filled=bint, frozen=Py_ssize_t, i=Py_ssize_t, f=Py_ssize_t,
               j=Py_ssize_t)
cpdef list fill(list demand, per_grant, capacity, double keep)
