/**
 * When a device renews. It renews once a third of its certificate's lifetime is left, measured on the
 * gateway's clock: the device learns the gap between its own clock and the gateway's from `serverTime` in
 * every certificate reply, so a device whose clock is hours off (no RTC, no NTP yet) still renews on time
 * and never presents a certificate it believes valid but the gateway considers expired.
 */
export interface RenewalInputs {
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** `serverTime` of the reply that delivered the certificate (gateway clock). */
  readonly serverTime: Date;
  /** Local clock when that reply arrived. */
  readonly receivedAt: Date;
  /** Fraction of the lifetime still left when renewal starts; 1/3 by default. */
  readonly fractionLeft?: number;
}

export const defaultRenewalFractionLeft = 1 / 3;

/** setTimeout takes a signed 32-bit delay (~24.8 days); longer delays fire at once, so wait in steps. */
export const maxTimerDelayMs = 2 ** 31 - 1;

/** Gateway clock minus local clock: positive when the gateway is ahead. Ignores the reply's transit time. */
export function clockSkewMs(serverTime: Date, receivedAt: Date): number {
  return serverTime.getTime() - receivedAt.getTime();
}

/** The local-clock instant at which to renew: notBefore + (1 − fractionLeft)·lifetime, shifted by the skew. */
export function renewalAt(inputs: RenewalInputs): Date {
  const fractionLeft = inputs.fractionLeft ?? defaultRenewalFractionLeft;
  if (!(fractionLeft > 0 && fractionLeft < 1)) throw new RangeError(`fractionLeft must be in (0, 1), got ${fractionLeft}`);
  const lifetime = inputs.notAfter.getTime() - inputs.notBefore.getTime();
  const onGatewayClock = inputs.notBefore.getTime() + lifetime * (1 - fractionLeft);
  return new Date(onGatewayClock - clockSkewMs(inputs.serverTime, inputs.receivedAt));
}

/** Milliseconds from `now` (local clock) until renewal; 0 when it is already due. */
export function renewalDelayMs(inputs: RenewalInputs, now: Date): number {
  return Math.max(0, renewalAt(inputs).getTime() - now.getTime());
}
