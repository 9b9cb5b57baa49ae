# Augmenting declarations for network.py (the optional compiled build: simulator/compiled.py): the
# re-share's rescheduling on typed jobs, flows and calendar (C calls, C doubles: the same IEEE values).
cimport cython
from simulator.job cimport Job
from simulator.engine.calendar cimport Calendar
from simulator.network.fabric cimport Flow

@cython.locals(job=Job, flow=Flow, rate=double)
cpdef reschedule(Calendar calendar, list rates, double now, joined)
