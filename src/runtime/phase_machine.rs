//! The glue between a `statig` machine whose states are the four phases of
//! `crd::Phase` (the pipeline's and the services') and the phase stored in
//! status: the machine is restored from the phase, handles one event, and
//! is read back. Each kind writes only its handlers.

/// Generates `State::of`, `State::phase` and `pub fn next_phase(current, event)`
/// for `$machine`, whose states are `pending`, `provisioning`, `ready` and
/// `degraded`, and `disabled` when called with `disabled` (pipelines only: a
/// kind without it never stores `Disabled`, and is rebuilt as Pending from it).
#[macro_export]
macro_rules! phase_machine {
    ($machine:expr, $event:ty) => {
        $crate::phase_machine!(@impl $machine, $event, State::pending(), {});
    };
    ($machine:expr, $event:ty, disabled) => {
        $crate::phase_machine!(@impl $machine, $event, State::disabled(), {
            State::Disabled {} => $crate::crd::Phase::Disabled,
        });
    };
    (@impl $machine:expr, $event:ty, $disabled:expr, { $($extra:tt)* }) => {
        impl State {
            fn of(phase: $crate::crd::Phase) -> State {
                match phase {
                    $crate::crd::Phase::Pending => State::pending(),
                    $crate::crd::Phase::Provisioning => State::provisioning(),
                    $crate::crd::Phase::Ready => State::ready(),
                    $crate::crd::Phase::Degraded => State::degraded(),
                    $crate::crd::Phase::Disabled => $disabled,
                }
            }

            fn phase(&self) -> $crate::crd::Phase {
                match self {
                    State::Pending {} => $crate::crd::Phase::Pending,
                    State::Provisioning {} => $crate::crd::Phase::Provisioning,
                    State::Ready {} => $crate::crd::Phase::Ready,
                    State::Degraded {} => $crate::crd::Phase::Degraded,
                    $($extra)*
                }
            }
        }

        /// The phase that follows `current` when `event` is observed; the
        /// machine is rebuilt from the stored phase every time.
        pub fn next_phase(current: $crate::crd::Phase, event: $event) -> $crate::crd::Phase {
            let mut machine = $machine.uninitialized_state_machine();
            *machine.state_mut() = State::of(current);
            let mut machine = machine.init();
            machine.handle(&event);
            machine.state().phase()
        }
    };
}
