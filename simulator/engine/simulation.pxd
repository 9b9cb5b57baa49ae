# Augmenting declarations for simulation.py (the optional compiled build: simulator/compiled.py).
cimport cython
from simulator.job cimport Job
from simulator.engine.calendar cimport Calendar, Due
from simulator.engine.recorder cimport Recorder
from simulator.cluster.pool cimport Pool, Allocation
from simulator.policies.base cimport ClusterView, Policy, Decision

cdef class Simulation:
    cdef public Policy policy
    cdef public object env, cluster, runtime_of, checkpoint_interval_s, progress
    cdef public Calendar calendar
    cdef public ClusterView view
    cdef public double restore_s, checkpoint_cost_s
    cdef public bint checkpoint_on_preempt, _wakeups, _durations_only, _pass_pending, _woken
    cdef public bint _started, _finished
    cdef public object context
    cdef public bint _in_order, _own_place
    cdef public Recorder recorder
    cdef public dict running
    cdef public object _admit, _on_suspend, _on_complete, _wakeup_at, _suspending_at
    cdef public Py_ssize_t _suspending_passes
    cdef public Py_ssize_t _n, _next
    cdef public list _ids, _submit, _gpus, _duration, _optional, sources
    cdef public list _on_submit_hooks, _on_queued_hooks, _on_launch_hooks, _on_release_hooks
    cdef public set _infeasible

    @cython.locals(submit=list, n=Py_ssize_t, queue=list, i=Py_ssize_t, following=double, due=Due)
    cpdef _on_arrivals(self, _event)
    @cython.locals(submit=list, n=Py_ssize_t, had_queue=bint, infeasible=set, queued_hooks=list, submit_hooks=list,
                   job=Job, policy=Policy)
    cpdef Py_ssize_t _admit_instant(self, Py_ssize_t i, now) except -1
    @cython.locals(alloc=Allocation)
    cpdef _on_completion(self, Job job, now)
    cpdef request_pass(self, now)
    @cython.locals(decision=Decision, launch=list, alloc=Allocation, policy=Policy, suspended=bint)
    cpdef _pass(self, now)
    @cython.locals(pool=Pool, devices=Py_ssize_t, runtime=double, work=double, restore=double, end=double)
    cpdef _launch(self, Job job, Allocation alloc, now)
    @cython.locals(held=double)
    cpdef _release(self, Job job, Allocation alloc, now)
