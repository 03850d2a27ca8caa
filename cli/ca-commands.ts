import { type Command, Option } from 'commander';
import { type CaRotation, type CertificateAuthority, type CertificateAuthorityList, caRotationStages, rotatableCaRoles } from '../contract/index.ts';
import { callApi, operatorClient, type OperatorOptions, withOperatorOptions } from './operator-context.ts';
import { emit } from './output.ts';
import { formatTable } from './table.ts';

function caTable(items: readonly CertificateAuthority[]): string {
  if (items.length === 0) return '(none)';
  return formatTable(
    ['ID', 'ROLE', 'STATE', 'NOT AFTER', 'CERTS', 'CLAIMS', 'CAS', 'SUBJECT'],
    items.map((ca) => [ca.id, ca.crossOf === null ? ca.role : `cross (${ca.crossOf} by ${ca.issuerId})`, ca.state, ca.notAfter.slice(0, 10), String(ca.usage.certificates), String(ca.usage.claims), String(ca.usage.authorities), ca.subject]),
  );
}

/** What the operator does after each stage (README "Rotating certificates and CAs"). */
function nextStep(rotation: CaRotation): string {
  const { role, stage, ca } = rotation;
  if (stage === 'prepare') {
    return `Prepared ${role} CA ${ca.id}: it is trusted now, beside the active one. Let every broker and device pick up the trust bundle, then: fleetgate ca rotate ${role} --stage activate`;
  }
  if (stage === 'activate') {
    const old = rotation.items.find((item) => item.role === role && item.state === 'retiring');
    const move =
      role === 'device'
        ? `move the devices with: fleetgate rotate start --select ca=${old?.id ?? '<old id>'}`
        : role === 'claim'
          ? 'give factories new claims (fleetgate claim create) and revoke or let expire the old ones'
          : 'rotate the device and claim CAs so they are signed by the new root';
    return `Activated ${role} CA ${ca.id}: it signs everything new. Next, ${move}; then: fleetgate ca rotate ${role} --stage retire`;
  }
  return `Retired ${role} CA ${ca.id}: it is no longer trusted. Its CRL and OCSP keep answering until its last certificate expires.`;
}

/** `fleetgate ca list|rotate` (README "Rotating certificates and CAs"), through the API. */
export function registerCaCommands(program: Command): void {
  const ca = program.command('ca').description('the certificate authorities: list them, rotate them without downtime');

  withOperatorOptions(ca.command('list').description('every CA: role, rotation state, expiry and what it still vouches for')).action(async (options: OperatorOptions) => {
    const list = await callApi<CertificateAuthorityList>(operatorClient(options), 'GET', '/v1/pki/cas');
    emit(Boolean(options.json), list, () => caTable(list.items));
  });

  withOperatorOptions(
    ca
      .command('rotate')
      .description('run one stage of a CA rotation: prepare a new CA (trusted at once), activate it (it issues from now on), retire the old one')
      .addArgument(ca.createArgument('<role>', 'which CA').choices(rotatableCaRoles))
      .addOption(new Option('--stage <stage>', 'the stage to run').choices(caRotationStages).makeOptionMandatory()),
  ).action(async (role: string, options: OperatorOptions & { stage: string }) => {
    const rotation = await callApi<CaRotation>(operatorClient(options), 'POST', '/v1/pki/cas/rotate', { role, stage: options.stage });
    emit(Boolean(options.json), rotation, () => `${nextStep(rotation)}\n\n${caTable(rotation.items)}`);
  });
}
