//! The few complex-number operations the power flow needs (per-unit phasors).

use std::ops::{Add, AddAssign, Div, Mul, Sub};

/// A complex number `re + j·im`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Complex {
    pub re: f64,
    pub im: f64,
}

impl Complex {
    pub(crate) const fn new(re: f64, im: f64) -> Complex {
        Complex { re, im }
    }

    pub(crate) fn conj(self) -> Complex {
        Complex::new(self.re, -self.im)
    }

    pub(crate) fn norm_sqr(self) -> f64 {
        self.re * self.re + self.im * self.im
    }

    pub(crate) fn abs(self) -> f64 {
        self.re.hypot(self.im)
    }

    /// The angle in degrees.
    pub(crate) fn arg_deg(self) -> f64 {
        self.im.atan2(self.re).to_degrees()
    }

    pub(crate) fn is_finite(self) -> bool {
        self.re.is_finite() && self.im.is_finite()
    }
}

impl Add for Complex {
    type Output = Complex;
    fn add(self, o: Complex) -> Complex {
        Complex::new(self.re + o.re, self.im + o.im)
    }
}

impl AddAssign for Complex {
    fn add_assign(&mut self, o: Complex) {
        self.re += o.re;
        self.im += o.im;
    }
}

impl Sub for Complex {
    type Output = Complex;
    fn sub(self, o: Complex) -> Complex {
        Complex::new(self.re - o.re, self.im - o.im)
    }
}

impl Mul for Complex {
    type Output = Complex;
    fn mul(self, o: Complex) -> Complex {
        Complex::new(
            self.re * o.re - self.im * o.im,
            self.re * o.im + self.im * o.re,
        )
    }
}

impl Div for Complex {
    type Output = Complex;
    fn div(self, o: Complex) -> Complex {
        let d = o.norm_sqr();
        Complex::new(
            (self.re * o.re + self.im * o.im) / d,
            (self.im * o.re - self.re * o.im) / d,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_matches_the_definitions() {
        let a = Complex::new(3.0, 4.0);
        let b = Complex::new(1.0, -2.0);
        assert_eq!(a + b, Complex::new(4.0, 2.0));
        assert_eq!(a - b, Complex::new(2.0, 6.0));
        assert_eq!(a * b, Complex::new(11.0, -2.0));
        let q = (a * b) / b;
        assert!((q.re - 3.0).abs() < 1e-12 && (q.im - 4.0).abs() < 1e-12);
        assert_eq!(a.abs(), 5.0);
        assert_eq!(a.conj(), Complex::new(3.0, -4.0));
        assert!((Complex::new(0.0, 1.0).arg_deg() - 90.0).abs() < 1e-12);
    }
}
