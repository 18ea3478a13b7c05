import { describe, expect, it } from 'vitest';
import { parseSettings } from '../../local/settings.ts';

describe('Function: parseSettings (local mode)', () => {
  it('takes the defaults from an empty environment', () => {
    // Act
    const settings = parseSettings({});

    // Assess
    expect(settings).toMatchObject({ PORT: 3000, TOKEN_VENDOR_LAMBDA: '0', AWS_REGION: 'us-east-1' });
  });

  it('says which setting is wrong and what it must be, in one line per setting and no raw schema output', () => {
    // Act
    let message = '';
    try {
      parseSettings({ PORT: 'abc', TOKEN_VENDOR_LAMBDA: 'yes', AWS_ENDPOINT_URL_DYNAMODB: 'made-up.value.1234' });
    } catch (error) {
      message = (error as Error).message;
    }

    // Assess
    expect(message).toBe(
      'PORT must be a port number from 0 to 65535 (0: any free port); TOKEN_VENDOR_LAMBDA must be 0 or 1; ' +
        'AWS_ENDPOINT_URL_DYNAMODB must be a URL',
    );
    expect(message).not.toContain('made-up');
  });
});
